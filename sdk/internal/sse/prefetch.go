package sse

import (
	"io"
	"sync"
	"sync/atomic"
)

// Prefetcher reads a stream ahead on its own goroutine, so that bytes that
// have arrived count as buffered (Buffered) even when they are more than
// one read: the Reader's NextBuffered then returns every event that arrived
// together, however many reads they took, before it would wait.
type Prefetcher struct {
	chunks chan []byte
	cur    []byte
	// queued is the number of bytes read from the source and not yet
	// returned by Read.
	queued atomic.Int64
	// err is the source's error, set before chunks is closed.
	err      error
	done     chan struct{}
	stopOnce sync.Once
	exited   chan struct{}
}

// Prefetch starts reading src ahead, size bytes at a time at most, holding
// at most about n reads that were not yet consumed. Close stops it; a read
// of src that is waiting for data ends only when src does (for a response
// body, when its request's context ends or the body is closed).
func Prefetch(src io.Reader, size, n int) *Prefetcher {
	p := &Prefetcher{chunks: make(chan []byte, n), done: make(chan struct{}), exited: make(chan struct{})}
	go p.run(src, size)
	return p
}

func (p *Prefetcher) run(src io.Reader, size int) {
	defer close(p.exited)
	var buf []byte
	for {
		// Chunks share one array until it is nearly used up, so that
		// small reads (pings) do not cost an array each.
		if len(buf) < size/8 {
			buf = make([]byte, size)
		}
		n, err := src.Read(buf)
		if n > 0 {
			p.queued.Add(int64(n))
			select {
			case p.chunks <- buf[:n:n]:
			case <-p.done:
				return
			}
			buf = buf[n:]
		}
		if err != nil {
			p.err = err
			close(p.chunks)
			return
		}
	}
}

// Read returns bytes read ahead, waiting for some when none are.
func (p *Prefetcher) Read(b []byte) (int, error) {
	if len(p.cur) == 0 {
		c, ok := <-p.chunks
		if !ok {
			return 0, p.err
		}
		p.cur = c
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	p.queued.Add(-int64(n))
	return n, nil
}

// Buffered is the number of bytes that Read returns without waiting.
func (p *Prefetcher) Buffered() int { return int(p.queued.Load()) }

// Close stops reading ahead.
func (p *Prefetcher) Close() { p.stopOnce.Do(func() { close(p.done) }) }

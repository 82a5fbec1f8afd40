package sse

import (
	"io"
	"testing"
)

// feed is a source whose reads the test serves one by one: calls tells of
// each read begun, data answers it, and closing data ends the stream.
type feed struct {
	calls chan struct{}
	data  chan string
}

func newFeed() *feed { return &feed{calls: make(chan struct{}), data: make(chan string)} }

func (f *feed) Read(p []byte) (int, error) {
	f.calls <- struct{}{}
	s, ok := <-f.data
	if !ok {
		return 0, io.EOF
	}
	return copy(p, s), nil
}

// TestPrefetchBuffersAcrossReads: with a Prefetcher under it, NextBuffered
// returns events that arrived in reads after the one the Reader last took,
// and stops, rather than waiting, where what arrived ends.
func TestPrefetchBuffersAcrossReads(t *testing.T) {
	src := newFeed()
	p := Prefetch(src, 64, 4)
	defer p.Close()
	r := NewReader(p, 1<<10)
	<-src.calls
	for _, w := range []string{"event: put\ndata: 1\n\n", "event: put\ndata: 2\n\nevent: delete\n", "data: 3\n\n"} {
		src.data <- w
		// The prefetcher reads again only once it has queued w.
		<-src.calls
	}
	if ev, err := r.Next(); err != nil || string(ev.Data) != "1" {
		t.Fatalf("Next = %q, %v; want event 1", ev, err)
	}
	for _, want := range []string{"2", "3"} {
		ev, ok, err := r.NextBuffered()
		if !ok || err != nil || string(ev.Data) != want {
			t.Fatalf("NextBuffered = %q, %v, %v; want event %s, which has arrived", ev, ok, err, want)
		}
	}
	if ev, ok, err := r.NextBuffered(); ok || err != nil {
		t.Fatalf("NextBuffered after all that arrived = %q, %v, %v; want nothing", ev, ok, err)
	}
	close(src.data)
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next after the source ended = %v, want io.EOF", err)
	}
	<-p.exited
}

// TestPrefetchClose: a prefetcher whose reader stopped taking its reads
// ends rather than wait forever to hand one over.
func TestPrefetchClose(t *testing.T) {
	src := newFeed()
	p := Prefetch(src, 64, 1)
	<-src.calls
	src.data <- "data: 1\n\n" // fills the queue
	<-src.calls
	src.data <- "data: 2\n\n" // waits for room
	p.Close()
	<-p.exited
}

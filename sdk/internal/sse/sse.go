// Package sse reads a server-sent-events stream as the WHATWG HTML
// specification defines its parsing: lines end in LF, CRLF or CR, a leading
// byte order mark is skipped, lines starting with a colon are comments, and
// an empty line dispatches the event built so far.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Event is one dispatched server-sent event.
type Event struct {
	// Type is the event field, or "message" when the event had none.
	Type string
	// ID is the last id field seen on the stream, as the specification's
	// "last event ID buffer" carries it from event to event.
	ID string
	// Data is the event's data lines joined with "\n".
	Data []byte
}

// ErrTooLarge is returned when a line or an event's data exceeds the
// reader's limit.
var ErrTooLarge = errors.New("sse: event too large")

// Reader decodes events from a stream.
type Reader struct {
	r *bufio.Reader
	// src reports bytes the source holds beyond r's, if it can.
	src     buffered
	max     int
	started bool
	lastID  string
	pendCR  bool
	// line is the line being read; lineDone says it was returned, so the
	// next read starts a new one. A line outlives a call so that
	// NextBuffered can stop inside it and Next carry on.
	line     []byte
	lineDone bool
	// The event being built, kept between calls for the same reason.
	typ     string
	data    []byte
	hasData bool
	inEvent bool
}

// buffered is a source that knows how many bytes it can return without
// waiting, such as a Prefetcher.
type buffered interface{ Buffered() int }

// NewReader returns a Reader that rejects lines and events larger than max
// bytes. When r has a Buffered method (a Prefetcher), NextBuffered counts
// the bytes it reports as already read.
func NewReader(r io.Reader, max int) *Reader {
	src, _ := r.(buffered)
	return &Reader{r: bufio.NewReaderSize(r, 32<<10), src: src, max: max}
}

// Next returns the next event. It returns io.EOF when the stream ends
// cleanly between events, and io.ErrUnexpectedEOF when it ends inside one (an
// incomplete event is discarded, as the specification requires).
func (r *Reader) Next() (Event, error) {
	ev, _, err := r.next(true)
	return ev, err
}

// NextBuffered returns the next event if the bytes already read from the
// stream (by the Reader, or by a Prefetcher under it) complete it, without
// waiting for more: ok is false when finding the
// event would wait for the stream. What it parsed of an incomplete event is
// kept, and the next call of either method goes on from there. A caller uses
// it to take, without waiting, the events that arrived together with one it
// has, and to apply them together.
func (r *Reader) NextBuffered() (ev Event, ok bool, err error) {
	return r.next(false)
}

// next returns the next event; without block, it stops (ok false) where the
// buffered bytes end.
func (r *Reader) next(block bool) (Event, bool, error) {
	for {
		line, ok, err := r.readLine(block)
		if err != nil {
			if err == io.EOF && r.inEvent {
				return Event{}, false, io.ErrUnexpectedEOF
			}
			return Event{}, false, err
		}
		if !ok {
			return Event{}, false, nil
		}
		if len(line) == 0 {
			if !r.hasData {
				// An event without data is not dispatched, but its
				// fields still reset.
				r.typ, r.inEvent = "", false
				continue
			}
			typ := r.typ
			if typ == "" {
				typ = "message"
			}
			ev := Event{Type: typ, ID: r.lastID, Data: r.data}
			r.typ, r.data, r.hasData, r.inEvent = "", nil, false, false
			return ev, true, nil
		}
		if line[0] == ':' {
			continue
		}
		r.inEvent = true
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			r.typ = string(value)
		case "data":
			if len(r.data)+len(value)+1 > r.max {
				return Event{}, false, fmt.Errorf("%w: data exceeds %d bytes", ErrTooLarge, r.max)
			}
			if r.hasData {
				r.data = append(r.data, '\n')
			}
			r.data = append(r.data, value...)
			r.hasData = true
		case "id":
			// An id containing NUL is ignored by the specification.
			if bytes.IndexByte(value, 0) < 0 {
				r.lastID = string(value)
			}
		}
	}
}

// readLine returns the next line without its terminator, and ok true; the
// returned slice is valid until the next call. Without block it returns ok
// false, keeping the part of the line read so far, when no byte is buffered.
func (r *Reader) readLine(block bool) (line []byte, ok bool, err error) {
	if r.lineDone {
		r.line, r.lineDone = r.line[:0], false
	}
	for {
		if !block && r.r.Buffered() == 0 && (r.src == nil || r.src.Buffered() == 0) {
			return nil, false, nil
		}
		b, err := r.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(r.line) > 0 {
				// A final line without terminator is incomplete: the
				// specification discards it.
				return nil, false, io.ErrUnexpectedEOF
			}
			return nil, false, err
		}
		if r.pendCR {
			r.pendCR = false
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\n':
			r.lineDone = true
			return r.trimBOM(), true, nil
		case '\r':
			r.pendCR = true
			r.lineDone = true
			return r.trimBOM(), true, nil
		}
		if len(r.line) >= r.max {
			return nil, false, fmt.Errorf("%w: line exceeds %d bytes", ErrTooLarge, r.max)
		}
		r.line = append(r.line, b)
	}
}

func (r *Reader) trimBOM() []byte {
	if !r.started {
		r.started = true
		return bytes.TrimPrefix(r.line, []byte("\xef\xbb\xbf"))
	}
	return r.line
}

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
	r       *bufio.Reader
	max     int
	started bool
	lastID  string
	line    []byte
	pendCR  bool
}

// NewReader returns a Reader that rejects lines and events larger than max
// bytes.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 32<<10), max: max}
}

// Next returns the next event. It returns io.EOF when the stream ends
// cleanly between events, and io.ErrUnexpectedEOF when it ends inside one (an
// incomplete event is discarded, as the specification requires).
func (r *Reader) Next() (Event, error) {
	var (
		typ     string
		data    []byte
		hasData bool
		inEvent bool
	)
	for {
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF && inEvent {
				return Event{}, io.ErrUnexpectedEOF
			}
			return Event{}, err
		}
		if len(line) == 0 {
			if !hasData {
				// An event without data is not dispatched, but its
				// fields still reset.
				typ, inEvent = "", false
				continue
			}
			if typ == "" {
				typ = "message"
			}
			return Event{Type: typ, ID: r.lastID, Data: data}, nil
		}
		if line[0] == ':' {
			continue
		}
		inEvent = true
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			typ = string(value)
		case "data":
			if len(data)+len(value)+1 > r.max {
				return Event{}, fmt.Errorf("%w: data exceeds %d bytes", ErrTooLarge, r.max)
			}
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		case "id":
			// An id containing NUL is ignored by the specification.
			if bytes.IndexByte(value, 0) < 0 {
				r.lastID = string(value)
			}
		}
	}
}

// readLine returns the next line without its terminator. The returned slice
// is valid until the next call.
func (r *Reader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		b, err := r.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(r.line) > 0 {
				// A final line without terminator is incomplete: the
				// specification discards it.
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if r.pendCR {
			r.pendCR = false
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\n':
			return r.trimBOM(), nil
		case '\r':
			r.pendCR = true
			return r.trimBOM(), nil
		}
		if len(r.line) >= r.max {
			return nil, fmt.Errorf("%w: line exceeds %d bytes", ErrTooLarge, r.max)
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

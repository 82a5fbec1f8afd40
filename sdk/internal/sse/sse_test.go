package sse

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func readAll(t *testing.T, in string, max int) ([]Event, error) {
	t.Helper()
	r := NewReader(strings.NewReader(in), max)
	var out []Event
	for {
		ev, err := r.Next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, ev)
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Event
	}{
		{"single", "event: put\nid: 7\ndata: {\"a\":1}\n\n", []Event{{"put", "7", []byte(`{"a":1}`)}}},
		{"default type and multi-line data", "data: a\ndata:b\n\n", []Event{{"message", "", []byte("a\nb")}}},
		{"crlf and cr", "event: x\r\ndata: 1\r\n\r\nevent: y\rdata: 2\r\r", []Event{{"x", "", []byte("1")}, {"y", "", []byte("2")}}},
		{"bom and comments", "\xef\xbb\xbf: ping\n\n: ping\nevent: snapshot\ndata: {}\n\n", []Event{{"snapshot", "", []byte("{}")}}},
		{"id carries over", "id: 3\ndata: a\n\ndata: b\n\n", []Event{{"message", "3", []byte("a")}, {"message", "3", []byte("b")}}},
		{"event without data is dropped", "event: put\n\ndata: z\n\n", []Event{{"message", "", []byte("z")}}},
		{"field without colon", "data\n\n", []Event{{"message", "", []byte("")}}},
		{"unknown fields ignored", "retry: 10\nfoo: bar\ndata: q\n\n", []Event{{"message", "", []byte("q")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(t, tt.in, 1<<10)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events %q, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if got[i].Type != tt.want[i].Type || got[i].ID != tt.want[i].ID || string(got[i].Data) != string(tt.want[i].Data) {
					t.Errorf("event %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestReaderIncomplete(t *testing.T) {
	got, err := readAll(t, "data: a\n\ndata: b\n", 1<<10)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != 1 {
		t.Fatalf("got %q, %v; want one event and io.ErrUnexpectedEOF", got, err)
	}
}

func TestReaderTooLarge(t *testing.T) {
	if _, err := readAll(t, "data: "+strings.Repeat("x", 100)+"\n\n", 50); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("long line: err = %v, want ErrTooLarge", err)
	}
	if _, err := readAll(t, strings.Repeat("data: 0123456789\n", 10)+"\n", 50); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("many data lines: err = %v, want ErrTooLarge", err)
	}
}

// FuzzReader checks that any input ends in events or an error, never a
// panic, and that no event's data exceeds the limit.
func FuzzReader(f *testing.F) {
	f.Add("event: put\nid: 7\ndata: {\"a\":1}\n\n")
	f.Add("\xef\xbb\xbf: ping\r\n\r\nevent: snapshot\rdata: {}\r\r")
	f.Add("data\n\nid: \x00\ndata: :\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		r := NewReader(strings.NewReader(in), 64)
		for range len(in) + 1 {
			ev, err := r.Next()
			if err != nil {
				return
			}
			if len(ev.Data) > 64 {
				t.Fatalf("event data of %d bytes passed a limit of 64", len(ev.Data))
			}
		}
		t.Fatal("reader returned more events than input bytes")
	})
}

// chunks is a stream that arrives in writes: each Read returns the rest of
// one chunk, and counts it, so that a test can tell a method that waited for
// the stream from one that did not.
type chunks struct {
	parts []string
	reads int
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.parts) == 0 {
		return 0, io.EOF
	}
	c.reads++
	n := copy(p, c.parts[0])
	if c.parts[0] = c.parts[0][n:]; c.parts[0] == "" {
		c.parts = c.parts[1:]
	}
	return n, nil
}

func TestNextBuffered(t *testing.T) {
	src := &chunks{parts: []string{
		"event: put\nid: 1\ndata: a\n\n: ping\r\n\r\nevent: delete\nid: 2\ndata: b\r\n\r\nevent: put\nda",
		"ta: c\n\n",
	}}
	r := NewReader(src, 1<<10)
	if _, ok, err := r.NextBuffered(); ok || err != nil {
		t.Fatalf("NextBuffered before any read = %v, %v; want nothing, no error", ok, err)
	}
	if src.reads != 0 {
		t.Fatalf("NextBuffered read the stream %d times before any read, want 0", src.reads)
	}
	ev, err := r.Next()
	if err != nil || ev.Type != "put" || string(ev.Data) != "a" {
		t.Fatalf("Next = %q, %v; want put a", ev, err)
	}
	ev, ok, err := r.NextBuffered()
	if !ok || err != nil || ev.Type != "delete" || ev.ID != "2" || string(ev.Data) != "b" {
		t.Fatalf("NextBuffered = %q, %v, %v; want the buffered delete b", ev, ok, err)
	}
	// What is left of the first write is a pending LF and half an event:
	// nothing to return without waiting.
	if ev, ok, err := r.NextBuffered(); ok || err != nil {
		t.Fatalf("NextBuffered over half an event = %q, %v, %v; want nothing", ev, ok, err)
	}
	if src.reads != 1 {
		t.Fatalf("the stream was read %d times, want 1: NextBuffered waited for it", src.reads)
	}
	ev, err = r.Next()
	if err != nil || ev.Type != "put" || ev.ID != "2" || string(ev.Data) != "c" {
		t.Fatalf("Next after NextBuffered stopped inside an event = %q, %v; want put c, id 2", ev, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next at the end = %v, want io.EOF", err)
	}
}

// FuzzReaderBuffered checks that reading with NextBuffered where it can and
// Next where it must, over input cut into two writes anywhere, gives the
// events and the error that Next alone gives.
func FuzzReaderBuffered(f *testing.F) {
	f.Add("event: put\nid: 7\ndata: {\"a\":1}\n\nevent: delete\ndata: x\n\n", uint16(20))
	f.Add("\xef\xbb\xbf: ping\r\n\r\nevent: snapshot\rdata: {}\r\r", uint16(3))
	f.Add("data: a\r\ndata: b\r\n\r\ndata", uint16(9))
	f.Fuzz(func(t *testing.T, in string, cut uint16) {
		const max = 64
		want, wantErr := readAll(t, in, max)
		at := int(cut) % (len(in) + 1)
		r := NewReader(&chunks{parts: []string{in[:at], in[at:]}}, max)
		var got []Event
		var err error
		for range len(in) + 2 {
			ev, ok, e := r.NextBuffered()
			if e == nil && !ok {
				ev, e = r.Next()
				ok = e == nil
			}
			if e != nil {
				err = e
				break
			}
			got = append(got, ev)
		}
		if err == io.EOF {
			err = nil
		}
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("error = %v, want %v (cut at %d)", err, wantErr, at)
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Fatalf("events = %q, want %q (cut at %d)", got, want, at)
		}
	})
}

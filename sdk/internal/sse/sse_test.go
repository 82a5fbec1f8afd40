package sse

import (
	"errors"
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

package sdk

import (
	"bytes"
	"io"
	"log/slog"
	"testing"

	"github.com/vigil-dev/vigil/sdk/flag"
	"github.com/vigil-dev/vigil/sdk/internal/sse"
)

// FuzzStream feeds arbitrary bytes to the stream decoder and the store, as a
// hostile or broken controller could. Nothing may panic, and whatever the
// store ends up serving must be consistent: every flag it holds evaluates,
// at the version the store has recorded for it.
func FuzzStream(f *testing.F) {
	f.Add([]byte("event: snapshot\nid: 2\ndata: {\"revision\": 2, \"flags\": [{\"key\": \"a\", \"version\": 2, \"enabled\": true, \"variants\": {\"off\": false, \"on\": true}, \"control\": \"off\", \"treatment\": \"on\", \"rollout\": {\"percent\": 50}}]}\n\n" +
		"event: put\nid: 3\ndata: {\"key\": \"a\", \"version\": 3, \"enabled\": false, \"variants\": {\"off\": 1}, \"control\": \"off\"}\n\n" +
		"event: delete\nid: 4\ndata: {\"key\": \"a\", \"version\": 4}\n\n"))
	f.Add([]byte("event: put\ndata: {\"key\": \"b\", \"version\": 1}\n\nevent: snapshot\ndata: {\"revision\": -1}\n\n"))
	f.Add([]byte("event: snapshot\ndata: {\"revision\": 1, \"flags\": [{\"key\": \"x\", \"variants\": {\"v\": 1}, \"control\": \"nope\"}]}\n\n: ping\n\n"))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Client{log: log, store: newStore(), fresh: make(chan struct{})}
		r := &remote{c: c}
		r.read(sse.NewReader(bytes.NewReader(data), 1<<16))
		if len(r.pending) > 0 {
			t.Fatalf("%d changes left unapplied when the stream ended", len(r.pending))
		}
		st := c.store.load()
		if st == nil {
			return
		}
		for _, fl := range st.snap.Flags() {
			if got := c.store.versions[fl.Key]; got != fl.Version {
				t.Fatalf("flag %s served at version %d, store records %d", fl.Key, fl.Version, got)
			}
			if st.meta[fl.Key] == nil {
				t.Fatalf("flag %s has no metadata", fl.Key)
			}
			d := st.snap.Evaluate(fl.Key, flag.Context{Key: "u"})
			if d.Reason != flag.ReasonError && d.Variant == "" {
				t.Fatalf("flag %s evaluated to no variant: %+v", fl.Key, d)
			}
		}
	})
}

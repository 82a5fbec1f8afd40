package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

var bg = context.Background()

func unit(key string) EvalContext { return EvalContext{Key: key} }

func TestSnapshotThenStreamUpdates(t *testing.T) {
	f := newFakeController(t, rollout("checkout", 100, true))
	c, _ := newTestClient(t, f, nil)
	if !c.Ready() {
		t.Fatal("client not ready after New returned with a reachable controller")
	}
	v, d := c.BoolDetail(bg, "checkout", unit("u1"), false)
	if !v || d.Variant != "on" || d.Reason != flag.ReasonSplit || d.Version != 1 || !d.Tracked {
		t.Fatalf("first evaluation = %v %+v, want on/split/version 1/tracked", v, d)
	}

	fl := rollout("checkout", 0, true)
	ver := f.set(fl)
	eventually(t, "the put to apply", func() bool {
		_, d := c.BoolDetail(bg, "checkout", unit("u1"), true)
		return d.Version == ver && d.Variant == "off"
	})

	f.set(rollout("search", 100, false))
	eventually(t, "a new flag to appear", func() bool { return c.Bool(bg, "search", unit("u1"), false) })

	ver = f.remove("checkout")
	eventually(t, "the delete to apply", func() bool {
		_, d := c.BoolDetail(bg, "checkout", unit("u1"), true)
		return d.ErrorType == flag.ErrorFlagNotFound
	})
	if got := c.Snapshot().Revision(); got != ver {
		t.Errorf("revision after delete = %d, want %d", got, ver)
	}
	if n := f.stat(func(f *fakeController) int { return f.conns }); n != 1 {
		t.Errorf("stream connections = %d, want 1", n)
	}
}

func TestStaleUpdatesDropped(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, false), rollout("marker", 0, false))
	c, _ := newTestClient(t, f, nil)
	// Versions: a=1, marker=2, revision 2. Events are applied in order, so
	// once a marker update is visible every event before it was handled.
	marker := int64(10)
	sync := func() {
		t.Helper()
		marker++
		m := rollout("marker", 0, false)
		m.Version = marker
		b, _ := json.Marshal(m)
		f.sendRaw("put", marker, string(b))
		eventually(t, "the marker", func() bool {
			_, d := c.BoolDetail(bg, "marker", unit("u"), false)
			return d.Version == marker
		})
	}
	put := func(version int64, percent float64) {
		fl := rollout("a", percent, false)
		fl.Version = version
		b, _ := json.Marshal(fl)
		f.sendRaw("put", version, string(b))
	}
	version := func() int64 {
		_, d := c.BoolDetail(bg, "a", unit("u"), false)
		return d.Version
	}

	put(1, 0) // same version as held
	sync()
	if v, d := c.BoolDetail(bg, "a", unit("u"), false); !v || d.Version != 1 {
		t.Fatalf("a put at the held version applied: %v %+v", v, d)
	}
	put(20, 0)
	sync()
	if v := version(); v != 20 {
		t.Fatalf("newer put not applied: version %d", v)
	}
	put(15, 100)
	f.sendRaw("delete", 16, `{"key": "a", "version": 16}`)
	sync()
	if v, d := c.BoolDetail(bg, "a", unit("u"), true); v || d.Version != 20 {
		t.Fatalf("stale put or delete applied: %v %+v", v, d)
	}
	f.sendRaw("delete", 30, `{"key": "a", "version": 30}`)
	sync()
	if _, d := c.BoolDetail(bg, "a", unit("u"), false); d.ErrorType != flag.ErrorFlagNotFound {
		t.Fatalf("newer delete not applied: %+v", d)
	}
	// The tombstone at 30 drops an older re-creation and accepts a newer one.
	put(25, 100)
	sync()
	if _, d := c.BoolDetail(bg, "a", unit("u"), false); d.ErrorType != flag.ErrorFlagNotFound {
		t.Fatalf("put older than the tombstone re-created the flag: %+v", d)
	}
	put(31, 100)
	sync()
	if v := version(); v != 31 {
		t.Fatalf("put newer than the tombstone not applied: version %d", v)
	}
	// A key absent from the snapshot was deleted at or before its
	// revision (2): an update at version 2 for it is stale.
	fl := rollout("ghost", 100, false)
	fl.Version = 2
	b, _ := json.Marshal(fl)
	f.sendRaw("put", 2, string(b))
	sync()
	if _, d := c.BoolDetail(bg, "ghost", unit("u"), false); d.ErrorType != flag.ErrorFlagNotFound {
		t.Fatalf("put older than the snapshot created a flag: %+v", d)
	}
}

func TestInvalidUpdateKeepsGoodFlag(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, false))
	c, logs := newTestClient(t, f, nil)
	// Control names a variant the flag lacks.
	f.sendRaw("put", 5, `{"key": "a", "version": 5, "enabled": true, "variants": {"off": false}, "control": "nope"}`)
	eventually(t, "the rejection to be logged", func() bool { return logs.contains("flag update rejected") })
	if v, d := c.BoolDetail(bg, "a", unit("u"), false); !v || d.Version != 1 {
		t.Fatalf("invalid update replaced the flag: %v %+v", v, d)
	}
	// A later valid update at a higher version still applies.
	ver := f.set(rollout("a", 0, false))
	eventually(t, "the valid update", func() bool {
		_, d := c.BoolDetail(bg, "a", unit("u"), true)
		return d.Version == ver
	})
	if n := f.stat(func(f *fakeController) int { return f.conns }); n != 1 {
		t.Errorf("an invalid flag dropped the stream: %d connections", n)
	}
}

func TestInvalidFlagInSnapshotKeepsPrevious(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, false), rollout("b", 100, false))
	c, logs := newTestClient(t, f, nil)
	f.update(func(f *fakeController) {
		f.revision = 10
		delete(f.flags, "a")
		f.badFlags = append(f.badFlags, json.RawMessage(`{"key": "a", "version": 9, "enabled": true, "variants": {"off": false}, "control": "nope"}`))
		nb := rollout("b", 0, false)
		nb.Version = 10
		f.flags["b"] = nb
	})
	f.dropStreams()
	eventually(t, "the new snapshot", func() bool { return c.Snapshot().Revision() == 10 })
	if !logs.contains("flags in the snapshot rejected") {
		t.Error("rejected flag not logged")
	}
	if v, d := c.BoolDetail(bg, "a", unit("u"), false); !v || d.Version != 1 {
		t.Errorf("invalid flag in a snapshot replaced the good one: %v %+v", v, d)
	}
	if v := c.Bool(bg, "b", unit("u"), true); v {
		t.Error("valid flag of the same snapshot not applied")
	}
}

func TestReconnectAndPollWhileStreamDown(t *testing.T) {
	f := newFakeController(t, rollout("a", 0, false))
	c, logs := newTestClient(t, f, nil)

	// The stream drops and refuses to come back; the snapshot still
	// answers, so polling carries the change.
	f.update(func(f *fakeController) { f.refuseStream = true })
	f.dropStreams()
	eventually(t, "the stream failure to be logged", func() bool { return logs.contains("flag stream down") })
	f.set(rollout("a", 100, false))
	eventually(t, "the polled change", func() bool { return c.Bool(bg, "a", unit("u"), false) })
	eventually(t, "a conditional poll answered 304", func() bool {
		return f.stat(func(f *fakeController) int { return f.notModified }) > 0
	})

	// The stream comes back: the client reconnects and follows it again.
	f.update(func(f *fakeController) { f.refuseStream = false })
	eventually(t, "a second stream connection", func() bool {
		return f.stat(func(f *fakeController) int { return f.conns }) >= 2
	})
	ver := f.set(rollout("a", 0, false))
	eventually(t, "an update on the new stream", func() bool {
		_, d := c.BoolDetail(bg, "a", unit("u"), true)
		return d.Version == ver
	})
}

func TestSilentStreamIsReopened(t *testing.T) {
	f := newFakeController(t, rollout("a", 0, false))
	c, logs := newTestClient(t, f, func(cfg *Config) { cfg.StreamIdleTimeout = 300 * time.Millisecond })
	f.update(func(f *fakeController) { f.silent = true })
	f.dropStreams()
	eventually(t, "the silent stream to be detected", func() bool { return logs.contains("stream silent for 300ms") })
	f.update(func(f *fakeController) { f.silent = false })
	f.set(rollout("a", 100, false))
	eventually(t, "the update after reopening", func() bool { return c.Bool(bg, "a", unit("u"), false) })
}

func TestUnreachableControllerKeepsLastSnapshot(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, false))
	c, logs := newTestClient(t, f, nil)
	f.update(func(f *fakeController) { f.down = true })
	f.dropStreams()
	eventually(t, "failed polls", func() bool {
		return logs.contains("snapshot poll failed") && f.stat(func(f *fakeController) int { return f.polls }) >= 3
	})
	if v, d := c.BoolDetail(bg, "a", unit("u"), false); !v || d.Reason != flag.ReasonSplit {
		t.Fatalf("controller down: %v %+v, want the last snapshot's variant", v, d)
	}
	// Gone entirely: connections refused.
	f.srv.CloseClientConnections()
	f.srv.Close()
	eventually(t, "refused connections", func() bool { return logs.contains("connection refused") })
	if v := c.Bool(bg, "a", unit("u"), false); !v {
		t.Fatal("controller gone: last snapshot not served")
	}
}

func TestDefaultsUntilFirstData(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, false))
	f.update(func(f *fakeController) { f.down = true })
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.InitTimeout = 50 * time.Millisecond })
	if c.Ready() {
		t.Fatal("ready without data")
	}
	v, d := c.BoolDetail(bg, "a", unit("u"), false)
	if v || d.Reason != flag.ReasonError || d.ErrorType != flag.ErrorProviderNotReady || d.Value != false {
		t.Fatalf("before data: %v %+v, want the default with provider_not_ready", v, d)
	}
	f.update(func(f *fakeController) { f.down = false })
	eventually(t, "data to arrive", func() bool { return c.Bool(bg, "a", unit("u"), false) })
	if !c.Ready() {
		t.Error("not ready after data arrived")
	}
}

func TestBadTokenServesDefaults(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, false))
	c, logs := newTestClient(t, f, func(cfg *Config) {
		cfg.Token = "wrong"
		cfg.InitTimeout = 50 * time.Millisecond
	})
	eventually(t, "the 401 to be logged", func() bool { return logs.contains("missing or bad token") })
	if _, d := c.BoolDetail(bg, "a", unit("u"), false); d.ErrorType != flag.ErrorProviderNotReady {
		t.Fatalf("bad token: %+v, want provider_not_ready", d)
	}
}

func TestDiskCacheColdStart(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "flags.json")
	f := newFakeController(t, rollout("a", 100, false))
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.CacheFile = cache })
	ver := f.set(rollout("b", 100, false))
	eventually(t, "the cache to hold the update", func() bool {
		data, err := os.ReadFile(cache)
		if err != nil {
			return false
		}
		doc, err := decodeSnapshot(data)
		return err == nil && doc.Revision == ver && len(doc.Flags) == 2
	})
	c.Close()
	if tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(cache), ".*.tmp")); len(tmps) != 0 {
		t.Errorf("temporary cache files left behind: %v", tmps)
	}

	// A cold start with the controller unreachable serves the cache.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	c2, err := New(bg, Config{ServerURL: dead, CacheFile: cache, InitTimeout: 50 * time.Millisecond, Logger: (&logBuffer{}).logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if c2.Ready() {
		t.Error("ready from the cache alone")
	}
	if !c2.Bool(bg, "a", unit("u"), false) || !c2.Bool(bg, "b", unit("u"), false) {
		t.Fatal("cold start did not serve the cached flags")
	}
	if got := c2.Snapshot().Revision(); got != ver {
		t.Errorf("cached revision = %d, want %d", got, ver)
	}
}

func TestCorruptCacheIgnored(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(cache, []byte(`{"revision": 3, "flags": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFakeController(t, rollout("a", 100, false))
	c, logs := newTestClient(t, f, func(cfg *Config) { cfg.CacheFile = cache })
	if !logs.contains("ignoring flag cache") {
		t.Error("corrupt cache not reported")
	}
	if !c.Bool(bg, "a", unit("u"), false) {
		t.Error("controller's flags not served")
	}
	eventually(t, "the cache to be rewritten", func() bool {
		data, _ := os.ReadFile(cache)
		_, err := decodeSnapshot(data)
		return err == nil
	})
}

const flagsYAML = `flags:
  - key: new-checkout
    variants: {off: false, on: true}
    control: off
    treatment: on
    enabled: true
    targets:
      - {variant: on, units: [qa-1]}
    rollout:
      percent: 0
`

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flags.yaml")
	if err := os.WriteFile(path, []byte(flagsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	c, err := New(bg, Config{FlagsFile: path, FileReloadInterval: 10 * time.Millisecond, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Ready() {
		t.Error("file mode not ready")
	}
	if _, d := c.BoolDetail(bg, "new-checkout", unit("qa-1"), false); d.Variant != "on" || d.Reason != flag.ReasonTargetingMatch {
		t.Fatalf("target: %+v", d)
	}
	if c.Bool(bg, "new-checkout", unit("u"), true) {
		t.Fatal("0% rollout served the treatment")
	}

	if err := os.WriteFile(path, []byte(`flags: [{key: new-checkout, variants: {off: false}, control: nope, enabled: true}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bad file to be reported", func() bool { return logs.contains("rules") || logs.contains("control") })
	if _, d := c.BoolDetail(bg, "new-checkout", unit("qa-1"), false); d.Variant != "on" {
		t.Fatalf("bad file replaced good flags: %+v", d)
	}

	if err := os.WriteFile(path, []byte(strings.Replace(flagsYAML, "percent: 0", "percent: 100", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reload", func() bool { return c.Bool(bg, "new-checkout", unit("u"), false) })
}

func TestFileModeRejectsBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flags.yaml")
	if err := os.WriteFile(path, []byte(`flags: [{key: a, variants: {off: false}, control: nope, enabled: true}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(bg, Config{FlagsFile: path})
	if err == nil {
		t.Fatal("New accepted a bad flags file")
	}
	for _, want := range []string{path, "flag a", "control"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{}, {ServerURL: "http://x", FlagsFile: "f"}, {ServerURL: "http://x", BackoffMin: time.Second, BackoffMax: time.Millisecond}} {
		if _, err := New(bg, cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad config", cfg)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	r := &remote{c: &Client{cfg: Config{BackoffMin: 500 * time.Millisecond, BackoffMax: 30 * time.Second}}}
	seen := map[time.Duration]bool{}
	for n := 1; n <= 12; n++ {
		bound := min(500*time.Millisecond<<(n-1), 30*time.Second)
		for range 50 {
			d := r.backoff(n)
			if d < bound/2 || d > bound {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, bound/2, bound)
			}
			seen[d] = true
		}
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct waits in 600 draws: not jittered", len(seen))
	}
}

// TestConcurrentEvaluationDuringUpdates evaluates from several goroutines,
// inside scopes, while updates stream in; run with -race it checks that
// evaluation and delivery share nothing unsynchronized.
func TestConcurrentEvaluationDuringUpdates(t *testing.T) {
	f := newFakeController(t, rollout("a", 50, true))
	c, _ := newTestClient(t, f, nil)
	stop := make(chan struct{})
	errs := make(chan string, 4)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, scope := c.StartScope(bg)
				_, d := c.BoolDetail(ctx, "a", unit(fmt.Sprintf("u-%d-%d", g, i)), false)
				scope.End(nil)
				if d.Variant != "on" && d.Variant != "off" {
					errs <- fmt.Sprintf("evaluation during updates: %+v", d)
					return
				}
			}
		}()
	}
	var last int64
	for i := range 30 {
		last = f.set(rollout("a", float64(i%2)*100, true))
	}
	eventually(t, "the last update", func() bool {
		_, d := c.BoolDetail(bg, "a", unit("u"), false)
		return d.Version == last
	})
	close(stop)
	wg.Wait()
	select {
	case e := <-errs:
		t.Fatal(e)
	default:
	}
}

func TestNewReturnsWhenContextEnds(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, false))
	f.update(func(f *fakeController) { f.down = true })
	ctx, cancel := context.WithCancel(bg)
	cancel()
	c, err := New(ctx, Config{ServerURL: f.url(), Token: f.token, InitTimeout: time.Minute, Logger: (&logBuffer{}).logger()})
	if err == nil || !strings.Contains(err.Error(), "context canceled") || c != nil {
		t.Fatalf("New with an ended context = %v, %v; want an error", c, err)
	}
}

// installs records the revision of every snapshot c installs from now on.
func installs(t *testing.T, c *Client) func() []int64 {
	t.Helper()
	var mu sync.Mutex
	var revs []int64
	s := c.store
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.changed
	s.changed = func(snap *flag.Snapshot) {
		mu.Lock()
		revs = append(revs, snap.Revision())
		mu.Unlock()
		if prev != nil {
			prev(snap)
		}
	}
	return func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(revs)
	}
}

// TestStreamBatchOneInstall: puts and deletes that arrive in one write, as
// the controller sends the changes of one store read, are applied as one
// snapshot, not one per event (a copy of every flag each).
func TestStreamBatchOneInstall(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, false), rollout("b", 100, false), rollout("c", 100, false))
	c, _ := newTestClient(t, f, nil)
	got := installs(t, c)
	f.sendFrames(
		putFrame(rollout("a", 0, false), 4),
		deleteFrame("b", 5),
		putFrame(rollout("d", 100, false), 6),
		putFrame(rollout("c", 0, true), 7),
		deleteFrame("a", 8),
		putFrame(rollout("e", 100, false), 9),
	)
	eventually(t, "the batch", func() bool { return c.Snapshot().Revision() == 9 })
	if revs := got(); len(revs) != 1 {
		t.Fatalf("a batch of 6 events installed %d snapshots (revisions %v), want 1", len(revs), revs)
	}
	for key, want := range map[string]int64{"c": 7, "d": 6, "e": 9} {
		if _, d := c.BoolDetail(bg, key, unit("u"), false); d.Version != want {
			t.Errorf("flag %s after the batch: %+v, want version %d", key, d, want)
		}
	}
	for _, key := range []string{"a", "b"} {
		if _, d := c.BoolDetail(bg, key, unit("u"), false); d.ErrorType != flag.ErrorFlagNotFound {
			t.Errorf("deleted flag %s after the batch: %+v", key, d)
		}
	}
	if _, d := c.BoolDetail(bg, "c", unit("u"), true); !d.Tracked || d.Variant != "off" {
		t.Errorf("flag c after the batch: %+v, want its new definition", d)
	}
}

// TestStreamBatchStaleAndInvalid: in a batch each event is judged as it was
// alone: a stale one is dropped, an invalid one keeps what the events
// before it made of the flag and is logged, a delete followed by a put
// re-creates the flag; and the stream's position advances past them all.
func TestStreamBatchStaleAndInvalid(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, false), rollout("b", 100, false), rollout("c", 100, false))
	c, logs := newTestClient(t, f, nil)
	got := installs(t, c)
	f.sendFrames(
		putFrame(rollout("a", 0, false), 10),
		// Control names a variant the flag lacks.
		frame("put", 11, []byte(`{"key": "a", "version": 11, "enabled": true, "variants": {"off": false}, "control": "nope"}`)),
		putFrame(rollout("b", 0, false), 2), // b is held at 2
		deleteFrame("c", 12),
		putFrame(rollout("c", 0, true), 13),
		putFrame(rollout("d", 100, false), 14),
		deleteFrame("d", 15),
		putFrame(rollout("d", 0, false), 14), // older than d's tombstone
		deleteFrame("ghost", 1),              // older than the snapshot
		putFrame(rollout("marker", 100, false), 20),
	)
	eventually(t, "the batch", func() bool { return c.Snapshot().Revision() == 20 })
	if revs := got(); len(revs) != 1 {
		t.Errorf("the batch installed %d snapshots (revisions %v), want 1", len(revs), revs)
	}
	if !logs.contains("flag update rejected") || !logs.contains("update of flag a to version 11 rejected") {
		t.Error("the invalid put was not logged with its flag and version")
	}
	for key, want := range map[string]int64{"a": 10, "b": 2, "c": 13, "marker": 20} {
		if _, d := c.BoolDetail(bg, key, unit("u"), true); d.Version != want || d.Variant == "" {
			t.Errorf("flag %s after the batch: %+v, want version %d", key, d, want)
		}
	}
	if v := c.Bool(bg, "a", unit("u"), true); v {
		t.Error("flag a does not have the definition of its valid put (version 10)")
	}
	if _, d := c.BoolDetail(bg, "d", unit("u"), false); d.ErrorType != flag.ErrorFlagNotFound {
		t.Errorf("flag d after its delete and an older put: %+v", d)
	}
	if n := f.stat(func(f *fakeController) int { return f.conns }); n != 1 {
		t.Errorf("the batch dropped the stream: %d connections", n)
	}
	// The stream's position is the batch's last id: with the stream down,
	// the first poll carries it as the validator and is answered 304.
	f.update(func(f *fakeController) { f.revision, f.refuseStream = 20, true })
	f.dropStreams()
	eventually(t, "a poll", func() bool { return f.stat(func(f *fakeController) int { return f.polls }) > 0 })
	if n := f.stat(func(f *fakeController) int { return f.polls - f.notModified }); n != 0 {
		t.Errorf("%d polls after the batch were not answered 304: the validator did not advance to 20", n)
	}
}

// TestStreamBatchSplitAcrossWrites: a batch cut inside an event is applied
// up to the cut without waiting for the rest, and the rest follows.
func TestStreamBatchSplitAcrossWrites(t *testing.T) {
	f := newFakeController(t, rollout("a", 100, false))
	c, _ := newTestClient(t, f, nil)
	got := installs(t, c)
	batch := putFrame(rollout("a", 0, false), 2) + putFrame(rollout("b", 100, false), 3) + deleteFrame("a", 4) + putFrame(rollout("c", 100, false), 5)
	cut := strings.Index(batch, `{"key": "a", "version": 4}`)
	if cut < 0 {
		t.Fatalf("no delete of a in %q", batch)
	}
	cut += 5 // inside the delete
	f.sendFrames(batch[:cut])
	eventually(t, "the events before the cut", func() bool { return c.Snapshot().Revision() == 3 })
	if _, d := c.BoolDetail(bg, "a", unit("u"), false); d.Version != 2 {
		t.Fatalf("flag a before the rest of the batch: %+v, want version 2", d)
	}
	f.sendFrames(batch[cut:])
	eventually(t, "the rest of the batch", func() bool { return c.Snapshot().Revision() == 5 })
	if _, d := c.BoolDetail(bg, "a", unit("u"), false); d.ErrorType != flag.ErrorFlagNotFound {
		t.Errorf("flag a after the batch: %+v, want deleted", d)
	}
	for key, want := range map[string]int64{"b": 3, "c": 5} {
		if _, d := c.BoolDetail(bg, key, unit("u"), false); d.Version != want {
			t.Errorf("flag %s after the batch: %+v, want version %d", key, d, want)
		}
	}
	if revs := got(); !slices.Equal(revs, []int64{3, 5}) {
		t.Errorf("installed revisions %v, want [3 5]: one per write", revs)
	}
}

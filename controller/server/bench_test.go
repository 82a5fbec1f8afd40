package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/controller/server"
	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
	"github.com/vigil-dev/vigil/sdk"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// BenchmarkPropagation measures the time from sending a PUT of a flag to
// the admin API until N connected SDK clients (the real Go SDK, on their
// stream) have applied it. The controller is a real `vigil serve` process
// (SQLite store), so that it and the clients each have their own file
// descriptor limit. Reported: per-client apply latency p50 and p99 over all
// clients and PUTs, the time until the last of the N clients applied a PUT
// (its p50 and max over PUTs), and the CPU time per PUT of the controller
// process and of the process holding the clients.
func BenchmarkPropagation(b *testing.B) {
	bin := vigiltest.Build(b)
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) { benchPropagation(b, bin, n) })
	}
}

func benchPropagation(b *testing.B, bin string, n int) {
	// Every client is on loopback, one address, so the cap on one
	// client's connections is lifted.
	p := vigiltest.Start(b, bin, []string{"VIGIL_ADMIN_TOKEN=" + adminSecret}, "--data", b.TempDir(), "--max-conns-per-client", "-1")
	admin := &http.Client{}
	put := func(percent int) int64 {
		body := fmt.Sprintf(`{"key":"bench","variants":{"on":true,"off":false},"control":"off","treatment":"on","enabled":true,"rollout":{"percent":%d}}`, percent)
		req, _ := http.NewRequest("PUT", p.URL+"/api/v1/flags/bench", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminSecret)
		resp, err := admin.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var f flag.Flag
		if err := json.NewDecoder(resp.Body).Decode(&f); err != nil || resp.StatusCode >= 300 {
			b.Fatalf("PUT: %s %v", resp.Status, err)
		}
		return f.Version
	}
	put(0)

	// The clients share one transport; each holds its own stream.
	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	hc := &http.Client{Transport: transport}
	clients := make([]*sdk.Client, n)
	var wg sync.WaitGroup
	var failed atomic.Value
	sem := make(chan struct{}, 64)
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := sdk.New(context.Background(), sdk.Config{
				ServerURL: p.URL, Token: adminSecret, HTTPClient: hc, Logger: quietLogger(),
				InitTimeout: time.Minute, PollInterval: time.Hour,
			})
			if err != nil {
				failed.Store(err)
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
		transport.CloseIdleConnections()
	})
	waitConnected(b, p.URL, n)

	var lat []time.Duration
	var all []time.Duration
	pending := make([]int, 0, n)
	// CPU time, unlike wall time, says what a PUT costs even on a busy
	// machine.
	serverCPU0, clientCPU0 := procCPU(b, p.Cmd.Process.Pid), selfCPU()
	percent := 0
	for b.Loop() {
		percent = 1 + percent%100
		pending = pending[:0]
		for i := range clients {
			pending = append(pending, i)
		}
		start := time.Now()
		v := put(percent)
		deadline := start.Add(30 * time.Second)
		for len(pending) > 0 {
			rest := pending[:0]
			now := time.Now()
			for _, i := range pending {
				if s := clients[i].Snapshot(); s != nil && s.Revision() >= v {
					lat = append(lat, now.Sub(start))
				} else {
					rest = append(rest, i)
				}
			}
			pending = rest
			if now.After(deadline) {
				b.Fatalf("%d of %d clients did not apply version %d within 30s", len(pending), n, v)
			}
			time.Sleep(200 * time.Microsecond)
		}
		all = append(all, time.Since(start))
	}
	puts := float64(len(all))
	b.ReportMetric(ms(procCPU(b, p.Cmd.Process.Pid)-serverCPU0)/puts, "server-cpu-ms/put")
	b.ReportMetric(ms(selfCPU()-clientCPU0)/puts, "clients-cpu-ms/put")
	slices.Sort(lat)
	slices.Sort(all)
	b.ReportMetric(ms(quantile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(quantile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(quantile(all, 0.50)), "all-applied-p50-ms")
	b.ReportMetric(ms(all[len(all)-1]), "all-applied-max-ms")
}

// clockTick is the unit of /proc/PID/stat CPU times on Linux (USER_HZ).
const clockTick = 10 * time.Millisecond

// procCPU returns the user and system CPU time a process has used.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: state is
	// the first, utime the 12th and stime the 13th.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parse /proc/%d/stat: %v %v", pid, err1, err2)
	}
	return time.Duration(utime+stime) * clockTick
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitConnected waits until the controller reports n connected streams.
func waitConnected(b *testing.B, url string, n int) {
	want := fmt.Sprintf("vigil_sse_clients %d\n", n)
	poll.Until(b, 2*time.Minute, fmt.Sprintf("the controller to report %d streams", n), func() error {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			return fmt.Errorf("no %q in /metrics", strings.TrimSpace(want))
		}
		return nil
	})
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkAdminAPI measures admin API requests per second over real HTTP
// on loopback, with 16 concurrent clients, against each store.
func BenchmarkAdminAPI(b *testing.B) {
	for _, k := range storeKinds {
		b.Run("store="+k.name, func(b *testing.B) {
			cfg := server.Config{}
			k.cfg(b, &cfg)
			e := start(b, cfg)
			for i := range 100 {
				key := fmt.Sprintf("f%03d", i)
				e.mustStatus(e.do("PUT", "/api/v1/flags/"+key, e.admin, flagJSON(key, 1)), http.StatusCreated)
			}
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			call := func(method, path string, body []byte) {
				var rd io.Reader
				if body != nil {
					rd = strings.NewReader(string(body))
				}
				req, _ := http.NewRequest(method, e.url+path, rd)
				req.Header.Set("Authorization", "Bearer "+e.admin)
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					b.Errorf("%s %s: %s", method, path, resp.Status)
				}
			}
			ops := []struct {
				name string
				run  func(i int)
			}{
				{"get", func(i int) { call("GET", fmt.Sprintf("/api/v1/flags/f%03d", i%100), nil) }},
				{"list", func(int) { call("GET", "/api/v1/flags", nil) }},
				{"put", func(i int) {
					key := fmt.Sprintf("f%03d", i%100)
					// Every round over the keys sets new percents, so each PUT writes.
					js, _ := json.Marshal(flagJSON(key, float64(i/100%100)))
					call("PUT", "/api/v1/flags/"+key, js)
				}},
			}
			for _, op := range ops {
				b.Run("op="+op.name, func(b *testing.B) {
					var seq atomic.Int64
					b.SetParallelism(8) // 16 clients on 2 cores
					start := time.Now()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							op.run(int(seq.Add(1)))
						}
					})
					b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
				})
			}
		})
	}
}

// BenchmarkStreamMemory measures what SDK streams cost a controller that
// holds many flags: a real `vigil serve` process (SQLite store) with 100,000
// flags (and, to compare, 1,000), restarted after loading them so that it holds no garbage of the
// load, then 100 streams and then 900 more, each read to the end of its
// snapshot event and then held open. The streams are raw loopback
// connections that discard what they read, so that the benchmark process
// holds no copy of the snapshots. The cost of a stream is the difference
// between 100 and 1,000 streams, divided by 900: the first streams also pay
// once for the shared snapshot event. Reported: the snapshot event's size,
// the server's CPU use and allocation rate over 5 s with no stream, its
// resident memory with no stream, 100 and 1,000, the resident memory, Go
// heap and goroutine stacks in use per stream, and the server's CPU time
// per stream.
func BenchmarkStreamMemory(b *testing.B) {
	bin := vigiltest.Build(b)
	// With few flags, what is left is what a stream costs by itself.
	for _, flags := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("flags=%d", flags), func(b *testing.B) { benchStreamMemory(b, bin, flags) })
	}
}

func benchStreamMemory(b *testing.B, bin string, flags int) {
	const few, many = 100, 1_000
	dir := b.TempDir()
	args := []string{"--data", dir, "--max-body-bytes", strconv.Itoa(256 << 20), "--max-conns-per-client", "-1"}
	env := []string{"VIGIL_ADMIN_TOKEN=" + adminSecret}

	load := vigiltest.Start(b, bin, env, args...)
	var body strings.Builder
	body.WriteString(`{"flags":[`)
	for i := range flags {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"key":"f%06d","variants":{"on":true,"off":false},"control":"off","treatment":"on","enabled":true,"rollout":{"percent":%d}}`, i, i%100)
	}
	body.WriteString(`]}`)
	req, _ := http.NewRequest("POST", load.URL+"/api/v1/apply", strings.NewReader(body.String()))
	req.Header.Set("Authorization", "Bearer "+adminSecret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("apply %d flags: %s %.300s", flags, resp.Status, msg)
	}
	if err := load.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	if err := load.Wait(time.Minute); err != nil {
		b.Fatalf("the loading controller: %v", err)
	}

	p := vigiltest.Start(b, bin, env, args...)
	pid := p.Cmd.Process.Pid
	addr := strings.TrimPrefix(p.URL, "http://")
	// What the controller does with no stream at all, over a few seconds:
	// the baseline the streams add to.
	const idle = 5 * time.Second
	cpuIdle0, alloc0 := procCPU(b, pid), goMemstat(b, p.URL, "alloc_bytes_total")
	time.Sleep(idle)
	idleCPU := procCPU(b, pid) - cpuIdle0
	idleAlloc := goMemstat(b, p.URL, "alloc_bytes_total") - alloc0
	rss0 := procRSS(b, pid)
	for b.Loop() {
		var conns []net.Conn
		var eventBytes int64
		open := func(n int) {
			opened := make([]net.Conn, n)
			var wg sync.WaitGroup
			sem := make(chan struct{}, 32)
			errs := make(chan error, n)
			for i := range opened {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					c, size, err := openSnapshotStream(addr, adminSecret)
					if err != nil {
						errs <- err
						return
					}
					opened[i] = c
					if i == 0 {
						eventBytes = size
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			conns = append(conns, opened...)
			waitConnected(b, p.URL, len(conns))
		}
		open(few)
		rssFew, heapFew, stackFew, cpuFew := procRSS(b, pid), goMemstat(b, p.URL, "heap_inuse_bytes"), goMemstat(b, p.URL, "stack_inuse_bytes"), procCPU(b, pid)
		open(many - few)
		rssMany, heapMany, stackMany, cpuMany := procRSS(b, pid), goMemstat(b, p.URL, "heap_inuse_bytes"), goMemstat(b, p.URL, "stack_inuse_bytes"), procCPU(b, pid)
		const mib = 1 << 20
		b.ReportMetric(float64(eventBytes)/mib, "snapshot-MiB")
		b.ReportMetric(float64(rss0)/mib, "rss-0-MiB")
		b.ReportMetric(float64(rssFew)/mib, fmt.Sprintf("rss-%d-MiB", few))
		b.ReportMetric(float64(rssMany)/mib, fmt.Sprintf("rss-%d-MiB", many))
		b.ReportMetric(float64(rssMany-rssFew)/(many-few)/(1<<10), "rss-KiB/stream")
		b.ReportMetric(float64(heapMany-heapFew)/(many-few)/(1<<10), "heap-KiB/stream")
		b.ReportMetric(float64(stackMany-stackFew)/(many-few)/(1<<10), "stack-KiB/stream")
		b.ReportMetric(100*idleCPU.Seconds()/idle.Seconds(), "idle-cpu-%")
		b.ReportMetric(float64(idleAlloc)/mib/idle.Seconds(), "idle-alloc-MiB/s")
		b.ReportMetric(ms(cpuMany-cpuFew)/(many-few), "server-cpu-ms/stream")
		for _, c := range conns {
			c.Close()
		}
		waitConnected(b, p.URL, 0)
	}
}

// openSnapshotStream opens an SDK stream on a raw connection and reads it
// to the end of its first event, the snapshot, with a small buffer; it
// returns the connection, still open, and the event's size.
func openSnapshotStream(addr, token string) (net.Conn, int64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	if _, err := io.WriteString(c, "GET /sdk/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+"\r\n\r\n"); err != nil {
		c.Close()
		return nil, 0, err
	}
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, 0, fmt.Errorf("open stream: %v %v", resp, err)
	}
	body := bufio.NewReaderSize(resp.Body, 64<<10)
	var n int64
	midLine := false // the last piece read ended within a long line
	for {
		line, err := body.ReadSlice('\n')
		n += int64(len(line))
		if err == bufio.ErrBufferFull {
			midLine = true
			continue
		}
		if err != nil {
			c.Close()
			return nil, 0, fmt.Errorf("read the snapshot event: %w", err)
		}
		if len(line) == 1 && !midLine {
			return c, n, nil
		}
		midLine = false
	}
}

// procRSS returns a process's resident memory in bytes.
func procRSS(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// goMemstat returns the controller's go_memstats_NAME gauge, in bytes.
func goMemstat(b *testing.B, url, name string) int64 {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "go_memstats_"+name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return int64(f)
		}
	}
	b.Fatalf("no go_memstats_%s in /metrics", name)
	return 0
}

package server

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// refusalLogEvery is the least time between two log lines about refused
// connections, so that a flood of them cannot flood the log too.
const refusalLogEvery = 10 * time.Second

// limitListener caps the connections open at once from one client address
// and in total. A connection over a cap is closed as soon as it is
// accepted, before anything is read from it: whoever holds many
// connections open (stalled or not) cannot take the descriptors, goroutines
// and memory that the controller's other clients need.
type limitListener struct {
	net.Listener
	perClient int // 0: no cap
	total     int // 0: no cap
	log       *slog.Logger
	refused   prometheus.Counter
	now       func() time.Time

	mu       sync.Mutex
	open     map[string]int
	all      int
	lastLog  time.Time
	unlogged int // refusals since the last log line
}

func newLimitListener(ln net.Listener, perClient, total int, log *slog.Logger, refused prometheus.Counter) net.Listener {
	if perClient <= 0 && total <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, perClient: perClient, total: total, log: log, refused: refused, now: time.Now, open: map[string]int{}}
}

// Accept returns the next connection within the caps, closing those over
// them.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := clientHost(c.RemoteAddr())
		if reason := l.admit(host); reason != "" {
			l.refused.Inc()
			c.Close()
			l.logRefusal(host, reason)
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.release(host) }}, nil
	}
}

// admit counts a new connection from host, or returns why it is refused.
func (l *limitListener) admit(host string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total > 0 && l.all >= l.total:
		return "the controller holds its maximum of connections"
	case l.perClient > 0 && l.open[host] >= l.perClient:
		return "the client holds its maximum of connections"
	}
	l.open[host]++
	l.all++
	return ""
}

func (l *limitListener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all--
	if l.open[host]--; l.open[host] <= 0 {
		delete(l.open, host)
	}
}

// logRefusal logs a refused connection, at most once per refusalLogEvery;
// the line counts the refusals it stands for.
func (l *limitListener) logRefusal(host, reason string) {
	l.mu.Lock()
	l.unlogged++
	now := l.now()
	if now.Sub(l.lastLog) < refusalLogEvery {
		l.mu.Unlock()
		return
	}
	n := l.unlogged
	l.lastLog, l.unlogged = now, 0
	open, all := l.open[host], l.all
	l.mu.Unlock()
	l.log.Warn("refusing connections over the connection cap", "client", host, "reason", reason,
		"client_open", open, "max_per_client", l.perClient, "open", all, "max", l.total,
		"refused", n, "refused_in", refusalLogEvery.String())
}

// clientHost is the address a connection cap counts by: the peer's IP.
func clientHost(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// limitedConn gives its slot back once, when it is closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

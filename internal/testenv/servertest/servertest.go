// Package servertest runs an in-process controller server on a free
// loopback port for the length of a test.
package servertest

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/vigil-dev/vigil/controller/server"
)

// Run builds a server with build, under a context that ends when the server
// is stopped, and serves it on a free loopback port. It returns the
// server's base URL, such as http://127.0.0.1:41234, and stop, which ends
// the context and waits for Serve, failing the test if Serve returned an
// error. stop also runs when the test ends; calling it again does nothing.
// A build or listen error fails the test at once.
func Run(tb testing.TB, build func(ctx context.Context) (*server.Server, error)) (url string, stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := build(ctx)
	if err != nil {
		cancel()
		tb.Fatalf("build server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("serve: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

// Pages follows a paged list to its end: page reads the page that a
// continue token names ("" for the first) and returns its keys and the
// next token, "" after the last. Pages returns every key in the order
// listed and how many pages it read; past 1,000 pages it fails the test,
// since a list that never ends is a bug in its tokens.
func Pages(tb testing.TB, page func(cont string) (keys []string, next string)) ([]string, int) {
	tb.Helper()
	var all []string
	cont := ""
	for pages := 1; ; pages++ {
		keys, next := page(cont)
		all = append(all, keys...)
		if next == "" {
			return all, pages
		}
		if pages > 1000 {
			tb.Fatal("more than 1000 pages")
		}
		cont = next
	}
}

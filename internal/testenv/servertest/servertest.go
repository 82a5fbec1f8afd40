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

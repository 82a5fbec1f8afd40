package sdk

import (
	"bufio"
	"net"
	"net/http"
)

// Middleware wraps an HTTP handler in a request scope: flags evaluated with
// the request's context are recorded in the cohort metrics when the request
// ends, failed if the status is 5xx or the handler called ReportError, and
// tracked flags are pinned in the request's baggage. Its signature fits
// routers' Use methods: router.Use(client.Middleware).
func (c *Client) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// One allocation holds the scope, its context and the response
		// writer wrapper.
		h := &httpScope{}
		c.initScope(&h.scope, r.Context())
		h.w = statusWriter{ResponseWriter: w}
		done := false
		defer func() {
			if !done {
				// The handler panicked; net/http answers that with an
				// aborted response, which a client sees as a failure.
				h.scope.EndStatus(http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(&h.w, r.WithContext(&h.scope.ctx))
		done = true
		h.scope.EndStatus(h.w.status())
	})
}

type httpScope struct {
	scope Scope
	w     statusWriter
}

// statusWriter remembers the status a handler sent.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx responses are interim; the final status comes later.
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Flush sends buffered data, for streaming handlers.
func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection to the handler, for protocols such as
// WebSocket that take over the connection.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap gives http.ResponseController access to the wrapped writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

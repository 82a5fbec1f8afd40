package cohort

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"

	"github.com/vigil-dev/vigil/analysis/metricstore"
)

const vectorBody = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1700000000,"7"]}]}}`

// faultServer answers the i-th request (from 0) with respond(i, w, r) and
// counts requests. Faults such as 503s and hangs on demand are what a real
// Prometheus cannot be made to produce, hence the fake.
func faultServer(t testing.TB, respond func(i int, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		respond(i, w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func newProvider(t testing.TB, opts HTTPOptions) *HTTPProvider {
	t.Helper()
	if opts.Backoff == 0 {
		opts.Backoff = time.Millisecond
	}
	p, err := NewHTTPProvider(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ok(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, vectorBody)
}

func TestHTTPProviderRetriesTransientFailures(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusInternalServerError} {
		srv, n := faultServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
			if i < 2 {
				http.Error(w, "busy", status)
				return
			}
			ok(w)
		})
		v, err := newProvider(t, HTTPOptions{URL: srv.URL}).Query(context.Background(), "x", time.Now())
		if err != nil {
			t.Errorf("status %d twice then OK: %v", status, err)
			continue
		}
		if len(v) != 1 || v[0].Value != 7 || n.Load() != 3 {
			t.Errorf("status %d: got %v after %d requests, want 7 after 3", status, v, n.Load())
		}
	}
}

func TestHTTPProviderGivesUp(t *testing.T) {
	srv, n := faultServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	_, err := newProvider(t, HTTPOptions{URL: srv.URL, Retries: 2}).Query(context.Background(), "x", time.Now())
	if err == nil || n.Load() != 3 {
		t.Fatalf("always 503: err %v after %d requests, want an error after 3", err, n.Load())
	}
	srv2, n2 := faultServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	_, err = newProvider(t, HTTPOptions{URL: srv2.URL, Retries: -1}).Query(context.Background(), "x", time.Now())
	if err == nil || n2.Load() != 1 {
		t.Fatalf("Retries -1: err %v after %d requests, want an error after 1", err, n2.Load())
	}
}

func TestHTTPProviderDoesNotRetryBadQueries(t *testing.T) {
	for _, tc := range []struct {
		status int
		kind   v1.ErrorType
	}{{http.StatusBadRequest, v1.ErrBadData}, {http.StatusUnprocessableEntity, v1.ErrExec}} {
		srv, n := faultServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tc.status)
			fmt.Fprintf(w, `{"status":"error","errorType":%q,"error":"nope"}`, tc.kind)
		})
		_, err := newProvider(t, HTTPOptions{URL: srv.URL}).Query(context.Background(), "x", time.Now())
		var apiErr *v1.Error
		if !errors.As(err, &apiErr) || apiErr.Type != tc.kind || n.Load() != 1 {
			t.Errorf("status %d: err %v after %d requests, want %s after 1", tc.status, err, n.Load(), tc.kind)
		}
	}
}

func TestHTTPProviderAttemptTimeout(t *testing.T) {
	srv, n := faultServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			// Reading the form body lets the server notice the client
			// hanging up; then hang until it does.
			_ = r.ParseForm()
			<-r.Context().Done()
			return
		}
		ok(w)
	})
	v, err := newProvider(t, HTTPOptions{URL: srv.URL, Timeout: 200 * time.Millisecond}).Query(context.Background(), "x", time.Now())
	if err != nil || len(v) != 1 || n.Load() != 2 {
		t.Fatalf("hang then OK: %v, %v after %d requests; want a result after 2", v, err, n.Load())
	}
}

func TestHTTPProviderRespectsContext(t *testing.T) {
	srv, _ := faultServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	p := newProvider(t, HTTPOptions{URL: srv.URL, Retries: 100, Backoff: time.Hour, MaxBackoff: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := p.Query(ctx, "x", time.Now())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
}

func TestHTTPProviderClientSettings(t *testing.T) {
	srv, _ := faultServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		u, p, hasAuth := r.BasicAuth()
		if !hasAuth || u != "vigil" || p != "s3cret" || r.Header.Get("X-Scope-OrgID") != "tenant-1" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		ok(w)
	})
	cfg := config.DefaultHTTPClientConfig
	cfg.BasicAuth = &config.BasicAuth{Username: "vigil", Password: "s3cret"}
	cfg.HTTPHeaders = &config.Headers{Headers: map[string]config.Header{"X-Scope-OrgID": {Values: []string{"tenant-1"}}}}
	if _, err := newProvider(t, HTTPOptions{URL: srv.URL, Client: cfg}).Query(context.Background(), "x", time.Now()); err != nil {
		t.Fatalf("with credentials and tenant header: %v", err)
	}
	_, err := newProvider(t, HTTPOptions{URL: srv.URL}).Query(context.Background(), "x", time.Now())
	if err == nil {
		t.Fatal("without credentials: no error")
	}
}

func TestNewHTTPProviderRejectsBadOptions(t *testing.T) {
	for name, opts := range map[string]HTTPOptions{
		"no URL":           {},
		"not http":         {URL: "ftp://x"},
		"no host":          {URL: "http://"},
		"negative":         {URL: "http://x", Timeout: -time.Second},
		"two auth kinds":   {URL: "http://x", Client: config.HTTPClientConfig{BearerToken: "t", BasicAuth: &config.BasicAuth{Username: "u"}}},
		"retries below -1": {URL: "http://x", Retries: -2},
	} {
		if _, err := NewHTTPProvider(opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestHTTPProviderAgainstEmbeddedAPI reads the embedded store through its
// HTTP API, the way Grafana or another controller would.
func TestHTTPProviderAgainstEmbeddedAPI(t *testing.T) {
	l := newLoader(t)
	l.loadCheckout()
	srv := httptest.NewServer(l.s.Handler())
	t.Cleanup(srv.Close)
	p := newProvider(t, HTTPOptions{URL: srv.URL})
	v, err := p.Query(context.Background(), "1 + 1", time.Now())
	if err != nil || len(v) != 1 || v[0].Value != 2 || len(v[0].Metric) != 0 {
		t.Fatalf("scalar query: %v, %v", v, err)
	}
	if _, err := p.Query(context.Background(), "x[5m]", time.Now()); err == nil || !strings.Contains(err.Error(), "matrix") {
		t.Errorf("range vector query: err %v, want a refusal of the matrix", err)
	}
	q := []FlagQuery{{Flag: "checkout", Treatment: "on", Control: "off", Since: l.end.Add(-10 * time.Minute)}}
	overHTTP, err := NewReader(p).Read(context.Background(), l.end, q)
	if err != nil {
		t.Fatal(err)
	}
	inProcess, err := NewReader(l.s).Read(context.Background(), l.end, q)
	if err != nil {
		t.Fatal(err)
	}
	assertCounts(t, overHTTP["checkout"].Counts, inProcess["checkout"].Counts)
}

var _ Provider = (*metricstore.Store)(nil)
var _ Provider = (*HTTPProvider)(nil)

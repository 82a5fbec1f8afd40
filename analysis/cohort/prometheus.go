package cohort

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// Defaults of HTTPOptions.
const (
	DefaultQueryTimeout = 30 * time.Second
	DefaultRetries      = 3
	DefaultBackoff      = 250 * time.Millisecond
	DefaultMaxBackoff   = 5 * time.Second
)

// HTTPOptions configure an HTTPProvider. Only URL is required.
type HTTPOptions struct {
	// URL is the base of the Prometheus HTTP API, without /api/v1: for
	// example http://prometheus:9090, a Thanos querier, Mimir's
	// http://mimir/prometheus, or VictoriaMetrics's http://vm:8428.
	URL string
	// Client holds the HTTP settings: bearer token, basic auth, TLS,
	// headers (such as Mimir's X-Scope-OrgID), proxy, as in a Prometheus
	// scrape configuration. Start from config.DefaultHTTPClientConfig: the
	// zero value follows no redirects and disables HTTP/2.
	Client config.HTTPClientConfig
	// Timeout bounds one attempt; default DefaultQueryTimeout. It is also
	// sent to the server as the query's timeout parameter.
	Timeout time.Duration
	// Retries is how many times a failed attempt is retried: network
	// errors and HTTP 429, 500, 502, 503 and 504. Errors in the query
	// itself (400, 422) are not retried. Default DefaultRetries; set -1
	// for none.
	Retries int
	// Backoff is the wait before the first retry; it doubles at each
	// retry up to MaxBackoff, with full jitter, and a Retry-After header
	// is honoured up to MaxBackoff. Defaults DefaultBackoff and
	// DefaultMaxBackoff.
	Backoff, MaxBackoff time.Duration
}

// HTTPProvider queries a Prometheus-compatible HTTP API.
type HTTPProvider struct {
	api v1.API
	// client retries QueryMatrix's exchanges, which hc carries so that
	// their answers are decoded as they arrive.
	client  *retryClient
	hc      *http.Client
	timeout time.Duration
}

// NewHTTPProvider returns a provider for the API at opts.URL. It does not
// contact the server.
func NewHTTPProvider(opts HTTPOptions) (*HTTPProvider, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus provider: URL %q: want http(s)://host[:port][/path]", opts.URL)
	}
	if err := opts.Client.Validate(); err != nil {
		return nil, fmt.Errorf("prometheus provider %s: HTTP client settings: %w", opts.URL, err)
	}
	if opts.Timeout < 0 || opts.Backoff < 0 || opts.MaxBackoff < 0 || opts.Retries < -1 {
		return nil, fmt.Errorf("prometheus provider %s: negative timeout, backoff or retries", opts.URL)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultQueryTimeout
	}
	switch opts.Retries {
	case 0:
		opts.Retries = DefaultRetries
	case -1:
		opts.Retries = 0
	}
	if opts.Backoff == 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	hc, err := config.NewClientFromConfig(opts.Client, "vigil")
	if err != nil {
		return nil, fmt.Errorf("prometheus provider %s: HTTP client: %w", opts.URL, err)
	}
	base, err := api.NewClient(api.Config{Address: opts.URL, Client: hc})
	if err != nil {
		return nil, fmt.Errorf("prometheus provider %s: %w", opts.URL, err)
	}
	rc := &retryClient{Client: base, retries: opts.Retries, timeout: opts.Timeout, backoff: opts.Backoff, maxBackoff: opts.MaxBackoff}
	return &HTTPProvider{api: v1.NewAPI(rc), client: rc, hc: hc, timeout: opts.Timeout}, nil
}

// Query evaluates an instant query at ts, retrying transient failures
// within ctx.
func (p *HTTPProvider) Query(ctx context.Context, query string, ts time.Time) (model.Vector, error) {
	v, _, _, err := p.api.Query(ctx, query, ts, v1.WithTimeout(p.timeout))
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case model.Vector:
		return v, nil
	case *model.Scalar:
		return model.Vector{{Metric: model.Metric{}, Value: v.Value, Timestamp: v.Timestamp}}, nil
	default:
		return nil, fmt.Errorf("query %q: result is a %s, want a vector or scalar", query, v.Type())
	}
}

// QueryMatrix evaluates a range vector selector at ts and calls fn with each
// series' raw samples, retrying transient failures within ctx. It posts the
// query form-encoded, as the API client does (without its fallback to GET:
// the Reader's queries are too long for a URL), and decodes the answer as
// it arrives (decodeMatrix): at 1,000 rollouts whose latency is judged an
// answer is a hundred megabytes, which the API client would first gather
// in memory. An attempt cut off part way is retried whole, so fn may be
// called again for series it has seen.
func (p *HTTPProvider) QueryMatrix(ctx context.Context, query string, ts time.Time, fn func(labels.Labels, []model.SamplePair)) error {
	u := p.client.URL("/api/v1/query", nil)
	form := url.Values{
		"query":   {query},
		"time":    {strconv.FormatFloat(float64(ts.Unix())+float64(ts.Nanosecond())/1e9, 'f', -1, 64)},
		"timeout": {p.timeout.String()},
	}
	body := form.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("query %q: %w", query, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, err = p.client.retry(ctx, req, func(req *http.Request) (*http.Response, error) {
		resp, err := p.hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			answer, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorAnswer))
			if err != nil {
				return resp, fmt.Errorf("HTTP %s: read the answer: %w", resp.Status, err)
			}
			return resp, answerError(resp, answer)
		}
		return resp, decodeMatrix(resp.Body, fn)
	})
	return err
}

// maxErrorAnswer is as much of an answer other than 2xx as is read for its
// error.
const maxErrorAnswer = 1 << 20

// retryClient retries one HTTP exchange. It sits below the API's decoding so
// that it sees status codes and Retry-After.
type retryClient struct {
	api.Client
	retries             int
	timeout             time.Duration
	backoff, maxBackoff time.Duration
}

// Do is the API client's exchange, retried.
func (c *retryClient) Do(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	var body []byte
	resp, err := c.retry(ctx, req, func(req *http.Request) (*http.Response, error) {
		resp, b, err := c.Client.Do(req.Context(), req)
		body = b
		return resp, err
	})
	return resp, body, err
}

// retry makes the exchange attempt until it succeeds, fails for good or ctx
// ends. Each attempt gets a request bound to its own timeout, which covers
// reading the answer; a failed attempt is retried when retryable says so.
func (c *retryClient) retry(ctx context.Context, req *http.Request, attempt func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	wait := c.backoff
	for n := 0; ; n++ {
		r := req
		if n > 0 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("replay request body: %w", err)
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := c.timed(ctx, r, attempt)
		if n >= c.retries || !retryable(resp, err) || ctx.Err() != nil {
			if err != nil && n > 0 {
				err = fmt.Errorf("after %d attempts: %w", n+1, err)
			}
			return resp, err
		}
		// Full jitter spreads the retries of many controllers.
		d := time.Duration(rand.Int64N(int64(wait) + 1))
		if ra := retryAfter(resp); ra > 0 {
			d = min(ra, c.maxBackoff)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = fmt.Errorf("HTTP %s", resp.Status)
			}
			return resp, fmt.Errorf("%w (gave up retrying: %w)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, c.maxBackoff)
	}
}

func (c *retryClient) timed(ctx context.Context, req *http.Request, attempt func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := attempt(req.WithContext(actx))
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("attempt timed out after %s: %w", c.timeout, err)
	}
	return resp, err
}

// retryable says whether a failed exchange may succeed if repeated: by its
// status when the server answered other than 2xx, otherwise by its error
// (a network error, a timeout, or an answer cut off).
func retryable(resp *http.Response, err error) bool {
	if resp != nil && resp.StatusCode/100 != 2 {
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// retryAfter reads a Retry-After header given in seconds.
func retryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

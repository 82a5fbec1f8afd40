package sdk

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Config configures a Client. Either ServerURL or FlagsFile is required.
type Config struct {
	// ServerURL is the controller's base URL, such as
	// "http://vigil:8080"; the SDK appends /sdk/v1/snapshot and
	// /sdk/v1/stream.
	ServerURL string
	// Token is sent as "Authorization: Bearer <Token>".
	Token string
	// HTTPClient makes the requests to the controller. Nil means a client
	// without an overall timeout (the stream is long-lived); snapshot polls
	// are bounded by PollTimeout.
	HTTPClient *http.Client
	// InitTimeout is how long New waits for the first snapshot. When it
	// passes, New returns a client that serves callers' defaults (Detail
	// says reason "error", error type "provider_not_ready") until data
	// arrives. Zero means 5 seconds; a negative value means do not wait.
	InitTimeout time.Duration

	// FlagsFile switches the client to offline mode: flags come from this
	// YAML or JSON flags file and the controller is never contacted.
	FlagsFile string
	// FileReloadInterval, when positive, rereads FlagsFile at this interval
	// and swaps in the new flags if the file changed and is valid.
	FileReloadInterval time.Duration

	// CacheFile, when set, is where the client keeps a copy of the last
	// snapshot it received, so that a cold start with the controller
	// unreachable serves the last known flags instead of defaults.
	CacheFile string

	// PollInterval is how often the snapshot is polled while the stream is
	// down. Zero means 10 seconds.
	PollInterval time.Duration
	// PollTimeout bounds one snapshot request. Zero means 10 seconds.
	PollTimeout time.Duration
	// StreamIdleTimeout is how long the stream may stay silent (the
	// controller pings every 15 s) before it is considered dead and
	// reopened. Zero means 45 seconds.
	StreamIdleTimeout time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential backoff
	// between stream reconnections. Zero means 0.5 s and 30 s.
	BackoffMin, BackoffMax time.Duration

	// MeterProvider records the cohort metrics. Nil means the global one.
	MeterProvider metric.MeterProvider
	// RecordUnitKey adds the unit key (feature_flag.context.id) to span
	// events. It is off by default because unit keys are usually personal
	// data.
	RecordUnitKey bool
	// DisablePinning turns off baggage pinning: the client neither serves
	// variants pinned upstream nor pins its own.
	DisablePinning bool
	// Logger receives delivery problems. Nil means slog.Default().
	Logger *slog.Logger
}

const (
	defaultInitTimeout       = 5 * time.Second
	defaultPollInterval      = 10 * time.Second
	defaultPollTimeout       = 10 * time.Second
	defaultStreamIdleTimeout = 45 * time.Second
	defaultBackoffMin        = 500 * time.Millisecond
	defaultBackoffMax        = 30 * time.Second
	// maxEventBytes bounds one stream event, and so the largest snapshot
	// the stream can carry.
	maxEventBytes = 64 << 20
)

func (c Config) withDefaults() (Config, error) {
	if c.ServerURL == "" && c.FlagsFile == "" {
		return c, errors.New("sdk config: set ServerURL or FlagsFile")
	}
	if c.ServerURL != "" && c.FlagsFile != "" {
		return c, errors.New("sdk config: ServerURL and FlagsFile are exclusive")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.InitTimeout, defaultInitTimeout)
	def(&c.PollInterval, defaultPollInterval)
	def(&c.PollTimeout, defaultPollTimeout)
	def(&c.StreamIdleTimeout, defaultStreamIdleTimeout)
	def(&c.BackoffMin, defaultBackoffMin)
	def(&c.BackoffMax, defaultBackoffMax)
	if c.BackoffMax < c.BackoffMin {
		return c, errors.New("sdk config: BackoffMax is less than BackoffMin")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

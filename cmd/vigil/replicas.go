package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/vigil-dev/vigil/controller/server"
)

// embeddedStoreLease is the lease, in the shared database, of the one
// replica that may run the embedded metric store.
const embeddedStoreLease = "embedded-metric-store"

// errSecondEmbeddedStore explains the refusal to start a second replica
// with its own embedded metric store on one database.
var errSecondEmbeddedStore = errors.New("another replica on this database runs the embedded metric store; " +
	"each replica's embedded store holds only the metrics sent to it, and the replica that leads rollouts " +
	"would judge on its own share of them. Give every replica --prometheus-url of a Prometheus that holds " +
	"all the services' metrics, or run one replica")

// singleEmbeddedStore makes the embedded metric store one per database: the
// replica that starts it holds a lease in the store, renewed every third of
// ttl while it runs and released when it stops; another replica that finds
// the lease held refuses to start. A replica that dies without releasing it
// blocks others for ttl at most.
func singleEmbeddedStore(ttl time.Duration) server.Extension {
	return func(h *server.Host) error {
		holder, err := leaseHolder()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ok, err := h.Store.AcquireLease(ctx, embeddedStoreLease, holder, ttl)
		if err != nil {
			return fmt.Errorf("embedded metric store: %w", err)
		}
		if !ok {
			// Name the holder, so that whoever reads this finds it. The
			// lease may have ended since.
			if l, err := h.Store.Lease(ctx, embeddedStoreLease); err == nil {
				return fmt.Errorf("%w (the replica that holds it: %s, until %s)", errSecondEmbeddedStore, l.Holder, l.Expires.UTC().Format(time.RFC3339))
			}
			return errSecondEmbeddedStore
		}
		h.Go("embedded metric store lease", func(ctx context.Context) error {
			return holdLease(ctx, h, holder, ttl, h.Logger)
		})
		return nil
	}
}

// holdLease renews the lease until ctx ends, then releases it so that
// another replica may start at once.
func holdLease(ctx context.Context, h *server.Host, holder string, ttl time.Duration, log *slog.Logger) error {
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return h.Store.ReleaseLease(rctx, embeddedStoreLease, holder)
		case <-t.C:
		}
		ok, err := h.Store.AcquireLease(ctx, embeddedStoreLease, holder, ttl)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("renew the embedded metric store's lease", "err", err)
		case err == nil && !ok:
			// The database was out of reach for longer than ttl and
			// another replica took the lease: two stores now split the
			// metrics.
			log.Error("lost the embedded metric store's lease to another replica; rollouts may be judged on part of the metrics")
		}
	}
}

// leaseHolder names this process in the lease table.
func leaseHolder() (string, error) {
	host, _ := os.Hostname()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b)), nil
}

package sdk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/vigil-dev/vigil/sdk/flag"
)

// fileSource serves flags from a flags file.
type fileSource struct {
	c    *Client
	path string
	// last is the content last loaded, to skip reloading an unchanged
	// file; revision counts loads, since a file has no store revision.
	last     []byte
	revision int64
}

func (c *Client) startFile(ctx context.Context) error {
	src := &fileSource{c: c, path: c.cfg.FlagsFile}
	if err := src.load(); err != nil {
		return err
	}
	c.markFresh()
	if c.cfg.FileReloadInterval <= 0 {
		return nil
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(c.cfg.FileReloadInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := src.load(); err != nil {
					c.log.Error("vigil: flags file not reloaded; keeping the flags loaded before", "err", err)
				}
			}
		}
	}()
	return nil
}

// load reads the file and installs it if it changed and is valid.
func (src *fileSource) load() error {
	data, err := os.ReadFile(src.path)
	if err != nil {
		return fmt.Errorf("load flags %s: %w", src.path, err)
	}
	if src.last != nil && bytes.Equal(data, src.last) {
		return nil
	}
	f, err := flag.Parse(data)
	if err != nil {
		return fmt.Errorf("load flags %s: %w", src.path, err)
	}
	src.revision++
	if err := src.c.store.replace(src.revision, f.Flags); err != nil {
		// Parse validated every flag, so this does not happen; report it
		// rather than hide it if validation rules ever diverge.
		return fmt.Errorf("load flags %s: %w", src.path, err)
	}
	src.last = data
	return nil
}

package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/vigil-dev/vigil/sdk/flag"
)

var errNoCache = errors.New("no cache file")

// diskCache keeps the last snapshot on disk for cold starts. Only the
// delivery goroutine writes it, under the store's writer lock.
type diskCache struct {
	path string
	// written is the revision last written, to skip rewriting it.
	written int64
}

func (d *diskCache) read() (snapshotDoc, error) {
	data, err := os.ReadFile(d.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return snapshotDoc{}, errNoCache
		}
		return snapshotDoc{}, fmt.Errorf("read flag cache %s: %w", d.path, err)
	}
	doc, err := decodeSnapshot(data)
	if err != nil {
		return snapshotDoc{}, fmt.Errorf("read flag cache %s: %w", d.path, err)
	}
	return doc, nil
}

// save returns the store's change hook that writes each new snapshot.
func (d *diskCache) save(log *slog.Logger) func(*flag.Snapshot) {
	return func(s *flag.Snapshot) {
		if s.Revision() == d.written {
			return
		}
		if err := d.write(snapshotDoc{Revision: s.Revision(), Flags: s.Flags()}); err != nil {
			log.Warn("vigil: cannot write the flag cache", "err", err)
			return
		}
		d.written = s.Revision()
	}
}

// write replaces the cache file atomically: a reader sees the old file or
// the new one, never a partial one, even if the process dies mid-write.
func (d *diskCache) write(doc snapshotDoc) error {
	data, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("write flag cache %s: %w", d.path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(d.path), "."+filepath.Base(d.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write flag cache %s: %w", d.path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write flag cache %s: %w", d.path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write flag cache %s: %w", d.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write flag cache %s: %w", d.path, err)
	}
	if err := os.Rename(tmp.Name(), d.path); err != nil {
		return fmt.Errorf("write flag cache %s: %w", d.path, err)
	}
	return nil
}

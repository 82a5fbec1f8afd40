package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves the certificate in a pair of PEM files and reloads it
// when either file changes, so that a renewed certificate (cert-manager, a
// certbot hook) is used without a restart.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // the files' sizes and modification times when loaded
	checked time.Time
}

// newCertReloader loads the pair once, failing if it cannot.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, err
	}
	if err := r.load(stamp); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) fileStamp() (string, error) {
	var stamp string
	for _, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("TLS: %w", err)
		}
		stamp += fmt.Sprintf("%d/%d;", st.Size(), st.ModTime().UnixNano())
	}
	return stamp, nil
}

func (r *certReloader) load(stamp string) error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS: --tls-cert %s, --tls-key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}

// reloadEvery bounds how often handshakes look at the files.
const reloadEvery = time.Second

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// reloaded first if the files changed. A pair that fails to load (a
// certificate written before its key) keeps the previous one in use.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= reloadEvery {
		r.checked = now
		stamp, err := r.fileStamp()
		if err == nil && stamp != r.stamp {
			err = r.load(stamp)
			if err == nil {
				r.log.Info("reloaded the TLS certificate", "cert", r.certFile)
			}
		}
		if err != nil {
			r.log.Error("reload the TLS certificate; keeping the previous one", "err", err)
		}
	}
	return r.cert, nil
}

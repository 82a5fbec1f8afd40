package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/testenv/poll"
	"github.com/vigil-dev/vigil/internal/testenv/syncbuf"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
)

// testCA signs certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a certificate for 127.0.0.1 named cn, and its key, to the
// two files.
func (ca *testCA) issue(t *testing.T, cn, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestServeTLS runs `vigil serve --tls-cert --tls-key` and talks to it with
// a real TLS client that trusts only the test's CA; a certificate written
// over the files is served to the next connections without a restart.
func TestServeTLS(t *testing.T) {
	bin := vigiltest.Build(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := newTestCA(t)
	ca.issue(t, "first", certFile, keyFile)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--addr", addr, "--data", filepath.Join(dir, "data"), "--tls-cert", certFile, "--tls-key", keyFile)
	cmd.Env = append(os.Environ(), adminEnv...)
	var log syncbuf.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.pool},
		DisableKeepAlives: true, // every request a new handshake
	}}
	served := func() (string, error) {
		resp, err := client.Get("https://" + addr + "/readyz")
		if err != nil {
			return "", fmt.Errorf("%w\n%s", err, log.String())
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("readyz: %s", resp.Status)
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName, nil
	}
	poll.Until(t, 30*time.Second, "vigil serve to answer over TLS", func() error {
		_, err := served()
		return err
	})
	if cn, err := served(); err != nil || cn != "first" {
		t.Fatalf("served %q, %v; want the first certificate", cn, err)
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered 200")
		}
	}

	ca.issue(t, "renewed", certFile, keyFile)
	poll.Until(t, 30*time.Second, "the renewed certificate to be served", func() error {
		cn, err := served()
		if err == nil && cn != "renewed" {
			err = fmt.Errorf("still %q", cn)
		}
		return err
	})
	if !strings.Contains(log.String(), "reloaded the TLS certificate") {
		t.Errorf("no log of the reload:\n%s", log.String())
	}
}

// TestServeTLSFlags: a half or unreadable pair fails before anything starts.
func TestServeTLSFlags(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("VIGIL_ADMIN_TOKEN", testAdminToken)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--tls-cert", "x.crt"}, exitUsage, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-cert", filepath.Join(dir, "none.crt"), "--tls-key", filepath.Join(dir, "none.key")}, exitError, "none.crt: no such file"},
	} {
		_, err := vigil(t, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data")}, tc.args...)...)
		if exitCode(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %v: %v, want exit %d with %q", tc.args, err, tc.code, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed starts left %v", entries)
	}
}

// Package image assembles Vigil's container image from a static vigil binary,
// without a Docker daemon and without pulling a base image: one layer on an
// empty image, holding the binary, the build machine's CA certificates, a
// passwd entry for the nonroot user and the /data volume it owns.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths and identities inside the image. The UID is distroless's nonroot,
// so that volumes prepared for distroless images fit this one too.
const (
	BinaryPath = "/usr/local/bin/vigil"
	CACertPath = "/etc/ssl/certs/ca-certificates.crt"
	DataDir    = "/data"
	UID        = 65532
	Port       = "8080/tcp"
)

// Entrypoint of the image: `vigil serve` on all interfaces. Arguments given
// to `docker run` or a pod's args add to it (--database postgres://...,
// --prometheus-url ...). The image sets no --data: serve refuses --data with
// --database, so the SQLite store's default, ./vigil-data, lands in the
// volume through the working directory instead.
var Entrypoint = []string{BinaryPath, "serve", "--addr", "0.0.0.0:8080"}

// OCI annotation keys set as image labels.
const (
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
	LabelLicenses = "org.opencontainers.image.licenses"
)

// Config says what goes into the image.
type Config struct {
	// Binary is the vigil binary for Arch: static, since the image has no
	// C library.
	Binary string
	// Arch is the GOARCH the binary was built for, such as amd64 or arm64.
	Arch string
	// CACerts is the CA bundle to copy in; default the build machine's
	// /etc/ssl/certs/ca-certificates.crt.
	CACerts string
	// Version, Revision and Source fill the OCI labels; Version is
	// required.
	Version, Revision, Source string
	// Created is the image's creation time and every file's modification
	// time: the commit's time makes the image reproducible. Default the Unix
	// epoch.
	Created time.Time
}

// Build assembles the image described by cfg. It checks that the binary is
// a static ELF for cfg.Arch first, since a dynamically linked one would
// fail in the image only when the container starts.
func Build(cfg Config) (v1.Image, error) {
	if cfg.Version == "" {
		return nil, errors.New("image: Version is required")
	}
	if cfg.CACerts == "" {
		cfg.CACerts = CACertPath
	}
	if cfg.Created.IsZero() {
		cfg.Created = time.Unix(0, 0)
	}
	cfg.Created = cfg.Created.UTC()
	bin, err := os.ReadFile(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("image: read binary: %w", err)
	}
	if err := checkStatic(bin, cfg.Arch); err != nil {
		return nil, fmt.Errorf("image: %s: %w", cfg.Binary, err)
	}
	certs, err := os.ReadFile(cfg.CACerts)
	if err != nil {
		return nil, fmt.Errorf("image: read CA certificates: %w", err)
	}
	layerTar, err := rootfs(bin, certs, cfg.Created)
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: cfg.Created},
			CreatedBy: "vigil deploy/image: vigil binary, CA certificates, nonroot user, /data",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("image: append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = cfg.Arch
	cf.Created = v1.Time{Time: cfg.Created}
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", UID, UID),
		Entrypoint:   Entrypoint,
		WorkingDir:   DataDir,
		Env:          []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=" + CACertPath},
		ExposedPorts: map[string]struct{}{Port: {}},
		Volumes:      map[string]struct{}{DataDir: {}},
		Labels: map[string]string{
			LabelTitle:    "vigil",
			LabelVersion:  cfg.Version,
			LabelRevision: cfg.Revision,
			LabelSource:   cfg.Source,
			LabelCreated:  cfg.Created.Format(time.RFC3339),
			LabelLicenses: "Apache-2.0",
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	return img, nil
}

// goarchMachine maps the GOARCHes Vigil is released for to ELF machines.
var goarchMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

// checkStatic reports whether bin is an ELF executable for arch that needs
// no dynamic loader.
func checkStatic(bin []byte, arch string) error {
	want, ok := goarchMachine[arch]
	if !ok {
		return fmt.Errorf("architecture %q: want amd64 or arm64", arch)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("built for %v, want %v (%s)", f.Machine, want, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked; build it with CGO_ENABLED=0")
		}
	}
	return nil
}

// rootfs writes the image's one layer: a tar of the directories, the
// passwd and group files, the CA bundle and the binary, all dated t.
func rootfs(bin, certs []byte, t time.Time) ([]byte, error) {
	const (
		passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
		group  = "root:x:0:\nnonroot:x:65532:\n"
	)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, uid int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: t, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: t, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	bindir := path.Dir(BinaryPath[1:])
	errs := []error{
		dir("etc", 0o755, 0),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		dir("etc/ssl", 0o755, 0),
		dir("etc/ssl/certs", 0o755, 0),
		file(CACertPath[1:], 0o644, certs),
		dir("home", 0o755, 0),
		dir("home/nonroot", 0o700, UID),
		// Go's os.TempDir is /tmp when $TMPDIR is unset.
		dir("tmp", 0o1777, 0),
		dir("usr", 0o755, 0),
		dir(path.Dir(bindir), 0o755, 0),
		dir(bindir, 0o755, 0),
		file(BinaryPath[1:], 0o755, bin),
		// The volume's mount point belongs to the nonroot user, so a new
		// volume, which takes the image's ownership, is writable by vigil.
		dir(DataDir[1:], 0o755, UID),
		tw.Close(),
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

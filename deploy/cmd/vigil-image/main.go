// Command vigil-image writes Vigil's container image as a tarball that
// `docker load` and `podman load` read, from a static vigil binary, without a
// Docker daemon or a base image. `make image` runs it.
//
//	vigil-image -binary bin/linux_amd64/vigil -arch amd64 -version v0.1.0 \
//	    -revision $(git rev-parse HEAD) -created 2026-12-01T00:00:00Z -o bin/vigil-image-amd64.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/vigil-dev/vigil/deploy/image"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vigil-image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var (
		cfg          image.Config
		created, out string
		repo         string
	)
	fs := flag.NewFlagSet("vigil-image", flag.ContinueOnError)
	fs.StringVar(&cfg.Binary, "binary", "", "static vigil binary for linux/ARCH (required)")
	fs.StringVar(&cfg.Arch, "arch", "amd64", "GOARCH of the binary: amd64 or arm64")
	fs.StringVar(&cfg.CACerts, "ca-certs", image.CACertPath, "CA bundle to copy into the image")
	fs.StringVar(&cfg.Version, "version", "", "version label and tag (required)")
	fs.StringVar(&cfg.Revision, "revision", "", "source revision label: the commit")
	fs.StringVar(&cfg.Source, "source", "https://github.com/vigil-dev/vigil", "source repository label")
	fs.StringVar(&created, "created", "", "creation time, RFC 3339 (default the Unix epoch, for reproducible images)")
	fs.StringVar(&repo, "repository", "vigil", "repository of the image's tag, REPOSITORY:VERSION")
	fs.StringVar(&out, "o", "", "tarball to write (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.Binary == "" || cfg.Version == "" || out == "" {
		return fmt.Errorf("-binary, -version and -o are required")
	}
	if created != "" {
		t, err := time.Parse(time.RFC3339, created)
		if err != nil {
			return fmt.Errorf("-created %q: want RFC 3339 such as 2026-12-01T00:00:00Z", created)
		}
		cfg.Created = t
	}
	tag, err := name.NewTag(repo + ":" + cfg.Version)
	if err != nil {
		return fmt.Errorf("-repository %q, -version %q: not an image tag: %w", repo, cfg.Version, err)
	}
	img, err := image.Build(cfg)
	if err != nil {
		return err
	}
	// Written beside the target and renamed, so a failed build leaves no
	// half-written tarball that docker load would reject later.
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", out, err)
	}
	fmt.Println("wrote", out, "tagged", tag.String())
	return nil
}

// Package console is Vigil's web console: a page for people that shows every
// rollout, the judge's evidence as charts, and the rollout commands, served
// by `vigil serve` from files built into the binary.
//
// The page is static; it signs in with a token that it keeps in the
// browser's session storage and sends as a bearer token to the same admin
// API the CLI uses, so the server's roles decide what a person may see and
// do. The console adds read routes of its own under /api/v1/console: an
// overview a page of flags at a time, with an ETag for polling, the judge's looks at each rollout
// (the rollout state keeps only the latest verdict), a flag's evaluation
// for a unit, and the plan a start would follow.
package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/server"
)

//go:embed assets
var assets embed.FS

// Config configures the console. Zero fields take the defaults in their
// comments.
type Config struct {
	// Path is where the console is mounted on the controller, such as
	// "/console/"; default "/". The page addresses its assets and the API
	// by relative URLs, so it also works behind a proxy that serves the
	// controller under a prefix of its own.
	Path string
}

// NormalizePath checks a mount path and returns it with one leading and one
// trailing slash.
func NormalizePath(p string) (string, error) {
	if p == "" {
		return "/", nil
	}
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#*:") || path.Clean("/"+strings.Trim(p, "/")) != "/"+strings.Trim(p, "/") {
		return "", fmt.Errorf("console path %q: want an absolute path such as /console/, without '?', '#', '*', ':' or dot segments", p)
	}
	p = "/" + strings.Trim(p, "/")
	if p != "/" {
		p += "/"
	}
	return p, nil
}

// Extension serves the console at cfg.Path and its routes under
// /api/v1/console.
func Extension(cfg Config) server.Extension {
	return func(h *server.Host) error {
		p, err := NormalizePath(cfg.Path)
		if err != nil {
			return err
		}
		cfg.Path = p
		page, err := renderIndex(cfg.Path)
		if err != nil {
			return err
		}
		static, err := fs.Sub(assets, "assets")
		if err != nil {
			return fmt.Errorf("console assets: %w", err)
		}
		files := http.StripPrefix(cfg.Path+"assets/", http.FileServerFS(static))

		// The page and its assets hold no data: every figure comes from the
		// API, which asks for a token. So they are served to anyone, like
		// /healthz.
		pages := h.Public()
		pages.GET(cfg.Path, func(c *gin.Context) {
			secure(c)
			c.Header("Cache-Control", "no-cache")
			c.Data(http.StatusOK, "text/html; charset=utf-8", page)
		})
		pages.GET(cfg.Path+"assets/*file", func(c *gin.Context) {
			secure(c)
			c.Header("Cache-Control", "no-cache")
			files.ServeHTTP(c.Writer, c.Request)
		})

		h.Read.GET("/console/overview", overview(h))
		h.Read.GET("/console/rollouts/:key/looks", looks(h.Store, h.Logger))
		// A read: it changes nothing, so readers may ask it.
		h.Read.POST("/console/flags/:key/evaluate", evaluate(h))
		h.Read.POST("/console/flags/:key/plan", previewPlan(h))
		return nil
	}
}

// secure sets the headers that keep the page from being framed or from
// running scripts from anywhere but the controller.
func secure(c *gin.Context) {
	c.Header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Referrer-Policy", "no-referrer")
}

// renderIndex fills the page's template with the relative way back from
// the console's path to the controller's root, where the API lives.
func renderIndex(mount string) ([]byte, error) {
	t, err := template.ParseFS(assets, "assets/index.html")
	if err != nil {
		return nil, fmt.Errorf("console page: %w", err)
	}
	root := "./" + strings.Repeat("../", strings.Count(strings.Trim(mount, "/"), "/")+min(1, len(strings.Trim(mount, "/"))))
	var b bytes.Buffer
	if err := t.Execute(&b, struct{ Root string }{root}); err != nil {
		return nil, fmt.Errorf("console page: %w", err)
	}
	return b.Bytes(), nil
}

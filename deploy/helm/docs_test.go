package helm_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/deploy/internal/doc"
)

// TestDocs renders the chart as each helm command of docs/deploy.md
// installs or upgrades it, and checks that the Secret and the dashboards'
// ConfigMap its kubectl commands create are what the chart reads.
func TestDocs(t *testing.T) {
	cmds, err := doc.Commands(filepath.Join(root, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		installed []string // the --set values of the last install, for --reuse-values
		last      Objects
		helms     int
		secret    *doc.Command
	)
	for _, c := range cmds {
		switch {
		case c.Name() == "helm":
			helms++
			if len(c.Args) < 4 || !slices.Contains([]string{"install", "upgrade", "template"}, c.Args[1]) {
				t.Errorf("%v: want helm install, upgrade or template RELEASE CHART", c)
				continue
			}
			if c.Args[3] != "deploy/helm/vigil" {
				t.Errorf("%v: chart %s, want deploy/helm/vigil", c, c.Args[3])
			}
			var sets []string
			if slices.Contains(c.Args, "--reuse-values") {
				sets = slices.Clone(installed)
			}
			for i := 4; i < len(c.Args); i++ {
				switch a := c.Args[i]; a {
				case "--set":
					sets = append(sets, c.Args[i+1])
					i++
				case "--set-file":
					// The file is what `vigil alerts generate` wrote:
					// its golden copy stands in for it.
					key, _, _ := strings.Cut(c.Args[i+1], "=")
					sets = append(sets, "file:"+key+"="+filepath.Join(root, "alerts", "testdata", "rules.yaml"))
					i++
				case "-n", "--namespace":
					i++
				case "--reuse-values":
				default:
					t.Errorf("%v: this test does not know helm's %s; teach it", c, a)
				}
			}
			last = mustRender(t, sets...)
			if c.Args[1] == "install" {
				installed = sets
			}
		case len(c.Args) > 3 && c.Name() == "kubectl" && slices.Contains(c.Args, "secret"):
			secret = &c
		case len(c.Args) > 3 && c.Name() == "kubectl" && slices.Contains(c.Args, "label"):
			label := c.Args[len(c.Args)-1]
			k, v, _ := strings.Cut(label, "=")
			if last.Dashboards == nil || last.Dashboards.Labels[k] != v {
				t.Errorf("%v: label %s is not the one the chart's dashboards carry for Grafana's sidecar", c, label)
			}
		}
	}
	if helms < 2 || last.Deployment == nil {
		t.Fatalf("%d helm commands in docs/deploy.md, want an install and an upgrade", helms)
	}
	if secret == nil {
		t.Fatal("docs/deploy.md creates no Secret")
	}
	var keys []string
	for _, lit := range secret.Flag("--from-literal") {
		k, _, _ := strings.Cut(lit, "=")
		keys = append(keys, k)
	}
	for _, env := range last.Deployment.Spec.Template.Spec.Containers[0].Env {
		ref := env.ValueFrom
		if ref == nil || ref.SecretKeyRef == nil {
			continue
		}
		if !slices.Contains(secret.Args, ref.SecretKeyRef.Name) || !slices.Contains(keys, ref.SecretKeyRef.Key) {
			t.Errorf("%v: creates no Secret %s with key %s, which the chart reads into %s", secret, ref.SecretKeyRef.Name, ref.SecretKeyRef.Key, env.Name)
		}
	}
}

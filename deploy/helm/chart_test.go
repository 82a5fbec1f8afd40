// Package helm_test checks the Helm chart in vigil/: helm's linter passes it,
// and every object it renders decodes strictly into the Kubernetes API
// types and the Prometheus Operator's, so that a misspelled field fails here
// rather than being dropped by the API server.
package helm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	stdflag "flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	chart "helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/deploy/image"
	"github.com/vigil-dev/vigil/internal/testenv/vigiltest"
)

var update = stdflag.Bool("update", false, "rewrite the chart's generated files in vigil/files from vigil")

// chartDir is the chart; root the repository.
var (
	chartDir, _ = filepath.Abs("vigil")
	root, _     = filepath.Abs("../..")
)

const (
	promURL    = "http://prometheus-operated.monitoring:9090"
	grafanaURL = "https://grafana.example.com"
)

// Objects are what the chart renders, each decoded strictly into its API
// type; nil where the values leave it out.
type Objects struct {
	Deployment     *appsv1.Deployment
	Service        *corev1.Service
	PDB            *policyv1.PodDisruptionBudget
	Dashboards     *corev1.ConfigMap
	ServiceMonitor *monitoringv1.ServiceMonitor
	Rule           *monitoringv1.PrometheusRule
}

// slot returns where an object of this apiVersion and kind goes, or an
// error for one the test does not know: a new template needs its type here.
func (o *Objects) slot(tm metav1.TypeMeta) (any, error) {
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		o.Deployment = &appsv1.Deployment{}
		return o.Deployment, nil
	case "v1 Service":
		o.Service = &corev1.Service{}
		return o.Service, nil
	case "policy/v1 PodDisruptionBudget":
		o.PDB = &policyv1.PodDisruptionBudget{}
		return o.PDB, nil
	case "v1 ConfigMap":
		o.Dashboards = &corev1.ConfigMap{}
		return o.Dashboards, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		o.ServiceMonitor = &monitoringv1.ServiceMonitor{}
		return o.ServiceMonitor, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		o.Rule = &monitoringv1.PrometheusRule{}
		return o.Rule, nil
	}
	return nil, fmt.Errorf("no API type for %s %s in this test", tm.APIVersion, tm.Kind)
}

// decode decodes one rendered document strictly, as the API server's strict
// field validation does: a field unknown, duplicated or in the wrong case is
// an error (encoding/json would take "targetport" for targetPort), and so
// is a second object of one kind.
func (o *Objects) decode(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	if tm.Kind == "" {
		return fmt.Errorf("no kind in %s", doc)
	}
	into, err := o.slot(tm)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", tm.Kind, err)
	}
	strict, err := kjson.UnmarshalStrict(js, into)
	if err := errors.Join(append(strict, err)...); err != nil {
		return fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return nil
}

// values parses helm's --set arguments, and its --set-file ones, which
// start with "file:" here: "file:key=path" sets key to the file's text.
func values(t *testing.T, sets ...string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	readFile := func(rs []rune) (any, error) {
		data, err := os.ReadFile(string(rs))
		return string(data), err
	}
	for _, s := range sets {
		var err error
		if file, ok := strings.CutPrefix(s, "file:"); ok {
			err = strvals.ParseIntoFile(file, vals, readFile)
		} else {
			err = strvals.ParseInto(s, vals)
		}
		if err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	return vals
}

// render is `helm template vigil vigil/ --namespace vigil` with vals, as
// helm's own template command does it: values checked against the chart's
// schema, templates rendered strictly. Rendering errors are returned; a
// rendered object that does not decode fails t.
func render(t *testing.T, vals map[string]any) (Objects, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals,
		chart.ReleaseOptions{Name: "vigil", Namespace: "vigil", Revision: 1, IsInstall: true}, nil, false)
	if err != nil {
		return Objects{}, err
	}
	files, err := engine.Engine{Strict: true}.Render(ch, rv)
	if err != nil {
		return Objects{}, err
	}
	var objs Objects
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	}) {
		if strings.HasSuffix(name, "NOTES.txt") {
			continue
		}
		for _, doc := range strings.Split(files[name], "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			if err := objs.decode([]byte(doc)); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
		}
	}
	return objs, nil
}

func mustRender(t *testing.T, sets ...string) Objects {
	t.Helper()
	objs, err := render(t, values(t, sets...))
	if err != nil {
		t.Fatalf("render with %q: %v", sets, err)
	}
	return objs
}

// TestLint runs helm lint on the chart with its defaults and with every
// part enabled. (helm lint lets a template's fail through, so the refusal
// of two replicas without a Prometheus is tested by rendering.)
func TestLint(t *testing.T) {
	for _, vals := range []map[string]any{
		nil,
		values(t, "prometheus.url="+promURL, "serviceMonitor.enabled=true", "prometheusRule.enabled=true"),
	} {
		res := lint.RunAll(chartDir, vals, "vigil")
		for _, m := range res.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("helm lint with %v: %v", vals, m)
			}
		}
	}
}

// TestRender checks what the chart deploys with every part enabled: two
// replicas on the Secret's PostgreSQL URL judging from the external
// Prometheus, probed, budgeted, scraped, alerted on and on the dashboards.
func TestRender(t *testing.T) {
	objs := mustRender(t, "prometheus.url="+promURL, "serviceMonitor.enabled=true",
		"prometheusRule.enabled=true", "prometheusRule.grafanaURL="+grafanaURL+"/")

	d := objs.Deployment
	if d == nil || objs.Service == nil || objs.PDB == nil || objs.Dashboards == nil || objs.ServiceMonitor == nil || objs.Rule == nil {
		t.Fatalf("rendered %+v, want every object", objs)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	pod := labels.Set(d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(pod) {
		t.Errorf("deployment selector %v (%v) does not select its pods %v", d.Spec.Selector, err, pod)
	}
	spec := d.Spec.Template.Spec
	if sc := spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != image.UID || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("pod security context %+v, want non-root as the image's user %d", sc, image.UID)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if !slices.Contains(c.Args, "--prometheus-url="+promURL) {
		t.Errorf("args %q lack --prometheus-url=%s", c.Args, promURL)
	}
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.Contains(a, "database") }) {
		t.Errorf("args %q name the database: its URL, password and all, belongs in the environment", c.Args)
	}
	for name, key := range map[string]string{"VIGIL_DATABASE": "database-url", "VIGIL_ADMIN_TOKEN": "admin-token"} {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef == nil ||
			c.Env[i].ValueFrom.SecretKeyRef.Name != "vigil" || c.Env[i].ValueFrom.SecretKeyRef.Key != key {
			t.Errorf("env %s not from Secret vigil key %s: %+v", name, key, c.Env)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports %+v, want http on the image's 8080", c.Ports)
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "http" {
			t.Errorf("probe %+v, want GET %s on port http", probe, path)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resource requests %v, want CPU and memory", c.Resources.Requests)
	}

	svc := objs.Service
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(pod) {
		t.Errorf("service selector %v does not select the pods %v", svc.Spec.Selector, pod)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("service ports %+v, want one to the container's http", svc.Spec.Ports)
	}
	if sel, err := metav1.LabelSelectorAsSelector(objs.PDB.Spec.Selector); err != nil || !sel.Matches(pod) ||
		objs.PDB.Spec.MinAvailable == nil || objs.PDB.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("pod disruption budget %+v, want minAvailable 1 of the pods", objs.PDB.Spec)
	}

	sm := objs.ServiceMonitor.Spec
	if sel, err := metav1.LabelSelectorAsSelector(&sm.Selector); err != nil || !sel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("service monitor selector %v does not select the service %v", sm.Selector, svc.Labels)
	}
	if len(sm.Endpoints) != 1 || sm.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Endpoints[0].Path != "/metrics" {
		t.Errorf("service monitor endpoints %+v, want /metrics on the service's port", sm.Endpoints)
	}

	// The rules are vigil's, with the dashboard links moved to Grafana's URL.
	generated, err := os.ReadFile(filepath.Join(chartDir, "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(bytes.ReplaceAll(generated, []byte("http://localhost:3000/d/"), []byte(grafanaURL+"/d/")), &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Groups) == 0 || !reflect.DeepEqual(objs.Rule.Spec, want) {
		t.Errorf("prometheus rule spec differs from files/alerts.yaml:\n%+v\nwant\n%+v", objs.Rule.Spec, want)
	}
	if out, err := yaml.Marshal(objs.Rule); err != nil || bytes.Contains(out, []byte("localhost")) {
		t.Errorf("prometheus rule still links to localhost (%v)", err)
	}

	if objs.Dashboards.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboards labels %v, want grafana_dashboard: \"1\" for Grafana's sidecar", objs.Dashboards.Labels)
	}
	overview, err := os.ReadFile(filepath.Join(chartDir, "files", "dashboards", "vigil-overview.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := objs.Dashboards.Data["vigil-overview.json"]; got != string(overview) || !json.Valid([]byte(got)) {
		t.Errorf("dashboards config map holds %d bytes of vigil-overview.json, want the %d of files/dashboards", len(got), len(overview))
	}
}

// TestValues checks what each value turns on, off or refuses.
func TestValues(t *testing.T) {
	url := "prometheus.url=" + promURL
	for _, tc := range []struct {
		name    string
		sets    []string
		wantErr string
		check   func(t *testing.T, o Objects)
	}{
		{name: "defaults with a Prometheus", sets: []string{url}, check: func(t *testing.T, o Objects) {
			if o.Deployment == nil || o.Service == nil || o.PDB == nil || o.Dashboards == nil {
				t.Errorf("rendered %+v, want deployment, service, budget and dashboards", o)
			}
			if o.ServiceMonitor != nil || o.Rule != nil {
				t.Error("Prometheus Operator objects rendered by default; clusters without its CRDs would refuse the release")
			}
		}},
		{name: "two replicas need a Prometheus", wantErr: "prometheus.url is required with more than one replica"},
		{name: "one replica judges from its own store", sets: []string{"replicaCount=1"}, check: func(t *testing.T, o Objects) {
			if o.PDB != nil {
				t.Error("a budget for one replica would block every node drain")
			}
			if slices.ContainsFunc(o.Deployment.Spec.Template.Spec.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, "--prometheus-url") }) {
				t.Errorf("args %q name a Prometheus that was not given", o.Deployment.Spec.Template.Spec.Containers[0].Args)
			}
		}},
		{name: "budget off", sets: []string{url, "podDisruptionBudget.enabled=false"}, check: func(t *testing.T, o Objects) {
			if o.PDB != nil {
				t.Error("budget rendered though disabled")
			}
		}},
		{name: "dashboards off", sets: []string{url, "dashboards.enabled=false"}, check: func(t *testing.T, o Objects) {
			if o.Dashboards != nil {
				t.Error("dashboards rendered though disabled")
			}
		}},
		{name: "service monitor labels", sets: []string{url, "serviceMonitor.enabled=true", "serviceMonitor.labels.release=kube-prometheus-stack"}, check: func(t *testing.T, o Objects) {
			if o.ServiceMonitor == nil || o.ServiceMonitor.Labels["release"] != "kube-prometheus-stack" {
				t.Errorf("service monitor %+v, want the release label the Prometheus selects", o.ServiceMonitor)
			}
		}},
		{name: "per-flag rules", sets: []string{url, "prometheusRule.enabled=true", "file:prometheusRule.flagRules=" + filepath.Join(root, "alerts", "testdata", "rules.yaml")}, check: func(t *testing.T, o Objects) {
			var names []string
			for _, g := range o.Rule.Spec.Groups {
				names = append(names, g.Name)
			}
			// The flags' file repeats the generic groups; each is kept once.
			if want := []string{"vigil-recording", "vigil-rollouts", "vigil-flag-new-checkout"}; !slices.Equal(names, want) {
				t.Errorf("rule groups %q, want %q", names, want)
			}
		}},
		{name: "image tag", sets: []string{url, "image.tag=v1.2.3"}, check: func(t *testing.T, o Objects) {
			if got := o.Deployment.Spec.Template.Spec.Containers[0].Image; got != "ghcr.io/vigil-dev/vigil:v1.2.3" {
				t.Errorf("image %s, want the tag given", got)
			}
		}},
		{name: "extra args", sets: []string{url, "extraArgs={--prometheus-timeout=10s}"}, check: func(t *testing.T, o Objects) {
			if !slices.Contains(o.Deployment.Spec.Template.Spec.Containers[0].Args, "--prometheus-timeout=10s") {
				t.Errorf("args %q lack the extra one", o.Deployment.Spec.Template.Spec.Containers[0].Args)
			}
		}},
		{name: "misspelled value", sets: []string{url, "replicaCont=3"}, wantErr: "replicaCont"},
		{name: "not a URL", sets: []string{"prometheus.url=prometheus:9090"}, wantErr: "prometheus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := render(t, values(t, tc.sets...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("render: %v, want an error naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, objs)
		})
	}
}

// TestStrictDecoding: the decoding the tests rely on refuses what the API
// server would silently drop.
func TestStrictDecoding(t *testing.T) {
	for doc, want := range map[string]string{
		"apiVersion: v1\nkind: ConfigMap\ndata: {}\ndata: {}\n":                                    `key "data" already set`,
		"apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n":                             `unknown field "spec.replica"`,
		"apiVersion: v1\nkind: Service\nspec:\n  ports:\n    - port: 80\n      targetport: http\n": `unknown field "spec.ports[0].targetport"`,
		"apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nspec:\n  endpoint: []\n":      `unknown field "spec.endpoint"`,
		"apiVersion: v1\nkind: Secret\n":                                                           "no API type for v1 Secret",
	} {
		var o Objects
		if err := o.decode([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("decode %q: %v, want %s", doc, err, want)
		}
	}
}

// TestGeneratedFiles keeps the chart's copies of the generated alert rules
// and overview dashboard equal to what this tree's vigil generates for no
// flags. go test ./helm -update rewrites them.
func TestGeneratedFiles(t *testing.T) {
	// Build builds, when make test has not, in the working directory's
	// module, which must be the root's: this one resolves other versions.
	t.Chdir(root)
	bin := vigiltest.Build(t)
	dir := t.TempDir()
	flags := filepath.Join(dir, "flags.yaml")
	if err := os.WriteFile(flags, []byte("flags: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("vigil %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	rules := run("alerts", "generate", "-f", flags)
	run("dashboards", "generate", "--all", "-f", flags, "-o", dir)
	overview, err := os.ReadFile(filepath.Join(dir, "vigil-overview.json"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		filepath.Join(chartDir, "files", "alerts.yaml"):                       rules,
		filepath.Join(chartDir, "files", "dashboards", "vigil-overview.json"): overview,
	}
	for path, want := range files {
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./helm -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what vigil generates; run go test ./helm -update in deploy/ and review the diff", path)
		}
	}
	// Every dashboard in the chart is one vigil generates.
	all, err := filepath.Glob(filepath.Join(chartDir, "files", "dashboards", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		if _, ok := files[p]; !ok {
			t.Errorf("%s is not generated by vigil; remove it", p)
		}
	}
}

package readme

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestLicenses: the repository and every module published on its own (each
// Go module and the npm package) carry the Apache-2.0 text, which
// sdk/js/package.json names.
func TestLicenses(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(want, []byte("Apache License\n                           Version 2.0, January 2004")) ||
		!bytes.Contains(want, []byte("END OF TERMS AND CONDITIONS")) {
		t.Fatalf("LICENSE is not the full Apache-2.0 text")
	}
	mods, err := filepath.Glob(filepath.Join(root, "sdk", "*", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{filepath.Join(root, "sdk"), filepath.Join(root, "sdk", "js")}
	for _, m := range mods {
		dirs = append(dirs, filepath.Dir(m))
	}
	if len(dirs) < 5 {
		t.Fatalf("found the modules %v; the glob is wrong", dirs)
	}
	for _, d := range dirs {
		got, err := os.ReadFile(filepath.Join(d, "LICENSE"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s/LICENSE differs from the root's: %v", d, err)
		}
	}
	var pkg struct {
		License string `json:"license"`
	}
	data, err := os.ReadFile(filepath.Join(root, "sdk", "js", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &pkg); err != nil || pkg.License != "Apache-2.0" {
		t.Errorf("sdk/js/package.json license %q, %v", pkg.License, err)
	}
	for _, f := range []string{"CHANGELOG.md", "SECURITY.md"} {
		if st, err := os.Stat(filepath.Join(root, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

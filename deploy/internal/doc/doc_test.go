package doc

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCommands(t *testing.T) {
	md := "# x\n\n```sh\nhelm install vigil chart \\\n  --set a=b --set 'c=d e'\necho \"X=$(openssl rand -hex 32)\" | sudo tee /etc/f >/dev/null\n```\n\n```go\nnot shell\n```\n"
	path := filepath.Join(t.TempDir(), "x.md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	cmds, err := Commands(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Command{
		{Args: []string{"helm", "install", "vigil", "chart", "--set", "a=b", "--set", "c=d e"}, Line: 4},
		{Args: []string{"echo", `"X=$(openssl rand -hex 32)"`}, Line: 6},
		{Args: []string{"tee", "/etc/f"}, Line: 6},
	}
	if !slices.EqualFunc(cmds, want, func(a, b Command) bool { return a.Line == b.Line && slices.Equal(a.Args, b.Args) }) {
		t.Errorf("Commands:\n%v\nwant\n%v", cmds, want)
	}
	if got := cmds[0].Flag("--set"); !slices.Equal(got, []string{"a=b", "c=d e"}) {
		t.Errorf("Flag(--set) = %q", got)
	}

	if err := os.WriteFile(path, []byte("```sh\necho 'unclosed\n```\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Commands(path); err == nil {
		t.Error("Commands parsed a block with an unclosed quote")
	}
}

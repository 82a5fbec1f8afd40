// Package doc reads the shell commands a Markdown document shows, so that
// tests can run or check each one against what it names.
package doc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// Command is one simple command of a ```sh block, with sudo taken off.
type Command struct {
	// Args are its words without their quotes. A word the shell would
	// expand, such as "$(openssl rand -hex 32)", is kept as written.
	Args []string
	// Line is where it starts in the document.
	Line int
}

// Name is the program the command runs.
func (c Command) Name() string { return c.Args[0] }

func (c Command) String() string {
	return fmt.Sprintf("line %d: %s", c.Line, strings.Join(c.Args, " "))
}

// Flag returns the values of a flag given as --name=value or --name value
// (or -n value for a short name), in order.
func (c Command) Flag(names ...string) []string {
	var vals []string
	for i := 1; i < len(c.Args); i++ {
		for _, n := range names {
			if v, ok := strings.CutPrefix(c.Args[i], n+"="); ok {
				vals = append(vals, v)
			} else if c.Args[i] == n && i+1 < len(c.Args) {
				vals = append(vals, c.Args[i+1])
			}
		}
	}
	return vals
}

// Commands parses every ```sh block of the Markdown file at path as a
// shell script and returns its simple commands in order, including each
// side of a pipe.
func Commands(path string) ([]Command, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var (
		cmds  []Command
		block strings.Builder
		start int
		in    bool
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case !in && line == "```sh":
			in, start = true, n+1
			block.Reset()
		case in && line == "```":
			in = false
			got, err := parse(block.String(), path, start)
			if err != nil {
				return nil, err
			}
			cmds = append(cmds, got...)
		case in:
			block.WriteString(line + "\n")
		}
	}
	if in {
		return nil, fmt.Errorf("%s:%d: sh block never closed", path, start-1)
	}
	return cmds, sc.Err()
}

// parse returns the simple commands of one block starting at line first.
func parse(src, path string, first int) ([]Command, error) {
	f, err := syntax.NewParser().Parse(strings.NewReader(src), path)
	if err != nil {
		return nil, fmt.Errorf("block at %s:%d: %w", path, first, err)
	}
	var (
		cmds []Command
		perr error
	)
	printer := syntax.NewPrinter()
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		c := Command{Line: first + int(call.Pos().Line()) - 1}
		for _, w := range call.Args {
			s, err := word(printer, w)
			if err != nil {
				perr = fmt.Errorf("%s:%d: %w", path, c.Line, err)
				return false
			}
			c.Args = append(c.Args, s)
		}
		if c.Args[0] == "sudo" && len(c.Args) > 1 {
			c.Args = c.Args[1:]
		}
		cmds = append(cmds, c)
		// A command substitution in an argument is not a command the
		// document asks to run by itself.
		return false
	})
	return cmds, perr
}

// word is w's value with quotes removed, or w as written when the shell
// would expand part of it.
func word(p *syntax.Printer, w *syntax.Word) (string, error) {
	var b strings.Builder
	for _, part := range w.Parts {
		switch part := part.(type) {
		case *syntax.Lit:
			b.WriteString(part.Value)
		case *syntax.SglQuoted:
			b.WriteString(part.Value)
		case *syntax.DblQuoted:
			for _, q := range part.Parts {
				lit, ok := q.(*syntax.Lit)
				if !ok {
					return printed(p, w)
				}
				b.WriteString(lit.Value)
			}
		default:
			return printed(p, w)
		}
	}
	return b.String(), nil
}

func printed(p *syntax.Printer, w *syntax.Word) (string, error) {
	var b strings.Builder
	err := p.Print(&b, w)
	return b.String(), err
}

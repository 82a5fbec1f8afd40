package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes of the vigil command. docs/cli.md lists them; scripts depend
// on them, so a code never changes meaning.
const (
	// exitOK: the command did what it was asked.
	exitOK = 0
	// exitError: it failed (the server refused, a file is wrong, the network
	// is down); the message says why.
	exitError = 1
	// exitUsage: the command line itself is wrong: an unknown command or
	// flag, a missing or extra argument.
	exitUsage = 2
	// exitRolledBack, exitAborted, exitPaused and exitRunning are the
	// answers of `vigil rollout status` for a rollout that is not promoted.
	exitRolledBack = 3
	exitAborted    = 4
	exitPaused     = 5
	exitRunning    = 6
)

// exitCodeError is an error that ends the command with a given exit code.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

// usageError marks err as a mistake in the command line.
func usageError(err error) error {
	if err == nil {
		return nil
	}
	return &exitCodeError{code: exitUsage, err: err}
}

// exitCode is the process exit code for the error a command returned.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ce *exitCodeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitError
}

// strictCommands makes every command under root refuse a wrong command line
// with exitUsage: cobra otherwise prints help and exits 0 for an unknown
// subcommand of anything but the root, which a script cannot tell from
// success.
func strictCommands(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			// A group: its only arguments are its subcommands' names.
			c.Args = unknownSubcommand
			c.SuggestionsMinimumDistance = 2
			c.RunE = func(c *cobra.Command, _ []string) error {
				c.SetOut(c.ErrOrStderr())
				c.Usage()
				return usageError(fmt.Errorf("%s: a subcommand is required", c.CommandPath()))
			}
		}
		args := c.Args
		if args == nil {
			args = cobra.ArbitraryArgs
		}
		// Required flags are checked here, with the arguments, so that
		// their absence is a usage error too; cobra would check them next
		// and find them set.
		c.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return usageError(err)
			}
			return usageError(c.ValidateRequiredFlags())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// unknownSubcommand refuses any argument of a group command, suggesting the
// subcommands it could have meant.
func unknownSubcommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	} else if other := elsewhere(c.Root(), args[0]); other != "" {
		// `vigil get rollouts`: the noun is a command of its own.
		msg += fmt.Sprintf("; did you mean %q?", other)
	} else {
		var names []string
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		msg += "; want one of " + strings.Join(names, ", ")
	}
	return errors.New(msg)
}

// elsewhere finds a top-level command named like name, singular or plural,
// and returns how to list its objects: "vigil rollout list".
func elsewhere(root *cobra.Command, name string) string {
	for _, c := range root.Commands() {
		if c.Name() != name && c.Name() != strings.TrimSuffix(name, "s") {
			continue
		}
		for _, sub := range c.Commands() {
			if sub.Name() == "list" {
				return sub.CommandPath()
			}
		}
		return c.CommandPath()
	}
	return ""
}

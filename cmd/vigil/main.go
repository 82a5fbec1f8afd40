// Command vigil is Vigil's single binary: the controller server, the CLI that
// talks to it, and the demo.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "vigil:", err)
		os.Exit(exitCode(err))
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "vigil",
		Short:         "Feature-flag rollouts that advance, hold and roll back on metrics",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       thisVersion().String(),
	}
	root.AddCommand(
		// Subcommands are registered here, one constructor per file.
		newServeCmd(serveOptions()...),
		newApplyCmd(),
		newGetCmd(),
		newDeleteCmd(),
		newAuditCmd(),
		newTokenCmd(),
		newRolloutCmd(),
		newEvalCmd(),
		newDashboardsCmd(),
		newAlertsCmd(),
		newDemoCmd(),
		newVersionCmd(),
	)
	// Cobra adds these two when it runs; strictCommands must see them.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	strictCommands(root)
	return root
}

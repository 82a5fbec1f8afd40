package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-dev/vigil/controller/store"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens (admin, reader, sdk)",
		Long: `Manage API tokens. Roles: admin may do everything; reader may read the
admin API and the SDK endpoints; sdk may only read the SDK endpoints.
The controller stores only a hash: a token is shown once, when created.`,
	}

	var name, role string
	create := &cobra.Command{
		Use:   "create --name NAME --role admin|reader|sdk|ingest",
		Short: "Mint a token and print it (shown only this once)",
		Args:  cobra.NoArgs,
	}
	cr := addRemoteFlags(create)
	create.Flags().StringVar(&name, "name", "", "token name, such as the service that uses it (required)")
	create.Flags().StringVar(&role, "role", "", store.Roles+" (required)")
	create.MarkFlagRequired("name")
	create.MarkFlagRequired("role")
	create.RunE = func(cmd *cobra.Command, _ []string) error {
		if !store.Role(role).Valid() {
			return fmt.Errorf("--role %q: want %s", role, store.Roles)
		}
		c, err := cr.client()
		if err != nil {
			return err
		}
		t, err := c.CreateToken(cmd.Context(), name, store.Role(role))
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), t.Token)
		fmt.Fprintf(cmd.ErrOrStderr(), "token %q (role %s) created; store it now, it cannot be shown again\n", t.Name, t.Role)
		return nil
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (names and roles, never secrets)",
		Args:  cobra.NoArgs,
	}
	lr := addRemoteFlags(list)
	lo := addOutputFlag(list, "table", "json")
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*lo, "table", "json"); err != nil {
			return err
		}
		c, err := lr.client()
		if err != nil {
			return err
		}
		ts, err := c.Tokens(cmd.Context())
		if err != nil {
			return err
		}
		if *lo == "json" {
			return printJSON(cmd.OutOrStdout(), ts)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tCREATED BY")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.Role, t.CreatedAt.Local().Format(time.DateTime), orDash(t.CreatedBy))
		}
		return tw.Flush()
	}

	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a token at once",
		Args:  cobra.ExactArgs(1),
	}
	rr := addRemoteFlags(revoke)
	revoke.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := rr.client()
		if err != nil {
			return err
		}
		if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
		return nil
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

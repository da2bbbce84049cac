package app

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
)

const userUsage = `  clinic-agent user add --data DIR --name NAME --role admin|frontdesk [--provider ID]...
  clinic-agent user list|disable|enable|reset|unlock --data DIR [--name NAME]
  clinic-agent user role --data DIR --name NAME --role admin|frontdesk [--provider ID]...
`

// providerList is a repeatable --provider flag.
type providerList []string

func (p *providerList) String() string { return strings.Join(*p, ",") }
func (p *providerList) Set(v string) error {
	*p = append(*p, strings.TrimSpace(v))
	return nil
}

// user runs `clinic-agent user ...` on the staff accounts of the agent's
// data dir; it works while the agent runs.
func user(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	verb := args[0]
	fs := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./agent-data", "the agent's data dir")
	name := fs.String("name", "", "the user's name: 2 to 40 lower-case letters, digits, dots, dashes or underscores")
	role := fs.String("role", "", "admin (users, providers and hours, every request) or frontdesk (requests)")
	var providers providerList
	fs.Var(&providers, "provider", "frontdesk only: limit the user to this provider's requests (repeat for several)")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	if verb != "list" && *name == "" {
		return fmt.Errorf("--name is required: %w", errUsage)
	}
	if _, err := os.Stat(filepath.Join(*data, "console.db")); err != nil && verb != "list" {
		// Before the agent's first start there is none yet; a mistyped
		// --data would make accounts the agent never reads.
		fmt.Fprintf(stderr, "note: %s has no console.db yet: check that --data is the agent's data dir\n", *data)
	}
	d, err := staff.Open(staff.Config{Path: filepath.Join(*data, console.StaffFile)})
	if err != nil {
		return err
	}
	switch verb {
	case "add":
		pw, err := d.Add(*name, staff.Role(*role), providers)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s added (%s); one-time password, to be replaced at first sign-in within %d days:\n%s\n",
			*name, *role, int(staff.OneTimeLife.Hours()/24), pw)
		return nil
	case "reset":
		pw, err := d.Reset(*name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s reset and signed out; one-time password:\n%s\n", *name, pw)
		return nil
	case "role":
		return done(stdout, d.SetRole(*name, staff.Role(*role), providers), "user %s is now %s; signed out", *name, *role)
	case "disable":
		return done(stdout, d.Disable(*name), "user %s disabled and signed out", *name)
	case "enable":
		return done(stdout, d.Enable(*name), "user %s enabled", *name)
	case "unlock":
		return done(stdout, d.Unlock(*name), "user %s unlocked", *name)
	case "list":
		return listUsers(d, stdout)
	}
	return errUsage
}

func done(w io.Writer, err error, format string, args ...any) error {
	if err == nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
	return err
}

func listUsers(d *staff.Directory, w io.Writer) error {
	users, err := d.List()
	if err != nil {
		return err
	}
	if len(users) == 0 {
		fmt.Fprintln(w, "no users: add the first admin with clinic-agent user add --name NAME --role admin")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tPROVIDERS\tSTATE")
	now := time.Now()
	for _, u := range users {
		state := "active"
		switch {
		case u.Disabled:
			state = "disabled"
		case u.MustChange && !now.Before(u.OneTimeUntil):
			state = "one-time password expired"
		case u.MustChange:
			state = "one-time password not yet replaced"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, strings.Join(u.Providers, ","), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "(a user locked after failed sign-ins shows on the console's Users page; user unlock clears it)")
	return nil
}

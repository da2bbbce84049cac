package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clinicrelay/clinicrelay/cmd/internal/command"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/notify"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

const usage = `usage:
  relay serve [--data DIR] [--http ADDR] [--nats-listen ADDR] [--encryption-key-file FILE]
              [--tls-cert FILE --tls-key FILE] [--https-cert FILE --https-key FILE] [--require-tls]
              [--smtp-url URL --smtp-from ADDR] [--public-url URL]
  relay serve --nats-url URL --creds FILE [--http ADDR]
  relay demo [serve flags] [--console ADDR]
  relay clinic add --slug SLUG --name NAME --timezone ZONE [--out DIR] [--data DIR]
  relay clinic list [--data DIR]
  relay clinic revoke SLUG [--data DIR]
  relay clinic show SLUG [--data DIR]
  relay clinic purge SLUG [--data DIR]
  relay creds operator [--out FILE] [--data DIR]
  relay audit --clinic SLUG [--since DURATION] [--format text|json|fhir] [--data DIR]
  relay notices --failed [--data DIR]
  relay backup --out FILE [--data DIR]
  relay restore FILE --operator-key FILE (--previous-data DIR | --as-backed-up) [--data DIR] [--encryption-key-file FILE]
`

// errUsage makes Main exit 2 with the usage text.
var errUsage = command.ErrUsage

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return command.Exit("relay", usage, run(ctx, args, stdout, stderr), stderr)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr, false)
	case "demo":
		return cmdServe(ctx, rest, stdout, stderr, true)
	case "clinic":
		if len(rest) == 0 {
			return errUsage
		}
		switch rest[0] {
		case "add":
			return cmdClinicAdd(ctx, rest[1:], stdout, stderr)
		case "list":
			return cmdClinicList(ctx, rest[1:], stdout, stderr)
		case "revoke":
			return cmdClinicRevoke(ctx, rest[1:], stdout, stderr)
		case "purge":
			return cmdClinicPurge(ctx, rest[1:], stdout, stderr)
		case "show":
			return cmdClinicShow(ctx, rest[1:], stdout, stderr)
		}
	case "audit":
		return cmdAudit(ctx, rest, stdout, stderr)
	case "notices":
		return cmdNotices(ctx, rest, stdout, stderr)
	case "backup":
		return cmdBackup(ctx, rest, stdout, stderr)
	case "restore":
		return cmdRestore(ctx, rest, stdout, stderr)
	case "creds":
		if len(rest) > 0 && rest[0] == "operator" {
			return cmdCredsOperator(ctx, rest[1:], stdout, stderr)
		}
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return errUsage
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses flags and allows at most maxArgs positional arguments.
func parse(fs *flag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > maxArgs {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(maxArgs), errUsage)
	}
	return nil
}

func cmdClinicAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("clinic add", stderr)
	slug := fs.String("slug", "", "clinic ID: 2-40 of a-z, 0-9, -")
	name := fs.String("name", "", "clinic name shown to patients")
	zone := fs.String("timezone", "", "IANA time zone, e.g. America/Toronto")
	out := fs.String("out", ".", "directory for SLUG.creds")
	public := fs.String("public-nats-url", "", "where the clinic's agent dials NATS, for the command printed (default: the relay's --public-nats-url, else where it listens)")
	data := targetFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	c := services.Clinic{ID: *slug, Name: *name, TimeZone: *zone, CreatedAt: time.Now().UTC()}
	if err := c.Validate(); err != nil {
		return fieldError(err)
	}
	if st, err := os.Stat(*out); err != nil || !st.IsDir() {
		return fmt.Errorf("--out %s is not a directory", *out)
	}
	return withAdmin(ctx, *data, func(ctx context.Context, a *adminSession) error {
		creds, err := a.Add(ctx, c)
		if err != nil {
			return fieldError(err)
		}
		path := filepath.Join(*out, c.ID+".creds")
		if err := os.WriteFile(path, creds, 0o600); err != nil {
			return fmt.Errorf("write creds: %w", err)
		}
		fmt.Fprintf(stdout, "clinic %s added; its agent's credentials are in %s (keep them secret).\n", c.ID, path)
		url := cmp.Or(*public, a.NATSURL)
		fmt.Fprintf(stdout, "Run this inside the clinic:\n  clinic-agent run --nats-url %s --creds %s\n", url, path)
		if localURL(url) {
			fmt.Fprintf(stdout, "Note: %s is this machine's own address; a clinic cannot dial it. Pass --public-nats-url "+
				"(here, or to relay serve) with the address clinics reach the relay at.\n", url)
		}
		return nil
	})
}

// localURL reports a NATS URL that only this machine can dial: loopback,
// or the unspecified address a relay listens on (0.0.0.0).
func localURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := p.Hostname()
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// fieldError turns a validation error into one line per field.
func fieldError(err error) error {
	var de *services.Error
	if errors.As(err, &de) && len(de.Fields) > 0 {
		msg := ""
		for f, m := range de.Fields {
			msg += fmt.Sprintf("\n  --%s: %s", f, m)
		}
		return fmt.Errorf("invalid clinic:%s", msg)
	}
	if errors.As(err, &de) {
		return errors.New(de.Message)
	}
	return err
}

func cmdClinicList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("clinic list", stderr)
	data := targetFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	return withAdmin(ctx, *data, func(ctx context.Context, a *adminSession) error {
		cs, err := a.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SLUG\tNAME\tTIMEZONE\tSTATE")
		for _, c := range cs {
			state := "active"
			if c.Revoked {
				state = "revoked"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.Name, c.TimeZone, state)
		}
		return tw.Flush()
	})
}

// slugCommand parses `relay clinic NAME SLUG [--data DIR]`, the slug before
// or after the flags.
func slugCommand(name string, args []string, stderr io.Writer) (slug string, data target, err error) {
	fs := newFlags("clinic "+name, stderr)
	dataDir := targetFlags(fs)
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		slug, args = args[0], args[1:]
	}
	if err := parse(fs, args, 1); err != nil {
		return "", target{}, err
	}
	if slug == "" {
		slug = fs.Arg(0)
	}
	if slug == "" {
		return "", target{}, fmt.Errorf("clinic %s needs a SLUG: %w", name, errUsage)
	}
	return slug, *dataDir, subjects.ValidClinicID(slug)
}

func cmdClinicRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	slug, data, err := slugCommand("revoke", args, stderr)
	if err != nil {
		return err
	}
	return withAdmin(ctx, data, func(ctx context.Context, a *adminSession) error {
		n, err := a.Revoke(ctx, slug)
		if err != nil {
			return fieldError(err)
		}
		fmt.Fprintf(stdout, "clinic %s revoked: %d agent credential(s) cut off; requests already queued stay in REQUESTS.\n", slug, n)
		return nil
	})
}

func cmdClinicPurge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	slug, data, err := slugCommand("purge", args, stderr)
	if err != nil {
		return err
	}
	return withAdmin(ctx, data, func(ctx context.Context, a *adminSession) error {
		p, err := a.Purge(ctx, slug)
		if err != nil {
			return fieldError(err)
		}
		fmt.Fprintf(stdout, "clinic %s purged: %d agent credential(s) revoked, %d queued request(s) and %d notice(s) removed, "+
			"keys purged: %d CLINICS, %d AVAILABILITY, %d HOLDS, %d STATUS, %d PENDING, %d CONTACTS, %d PORTAL, "+
			"%d PORTAL_TOKENS.\n", slug, p.Credentials,
			p.Requests, p.Notices, p.Keys[subjects.BucketClinics], p.Keys[subjects.BucketAvailability],
			p.Keys[subjects.BucketHolds], p.Keys[subjects.BucketStatus], p.Keys[subjects.BucketPending],
			p.Keys[subjects.BucketContacts], p.Keys[subjects.BucketPortal], p.Keys[subjects.BucketPortalTokens])
		return nil
	})
}

func cmdCredsOperator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("creds operator", stderr)
	data := targetFlags(fs)
	out := fs.String("out", "", "creds file to write (default DATA/operator.creds)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(data.dir, "operator.creds")
	}
	return withAdmin(ctx, *data, func(ctx context.Context, a *adminSession) error {
		creds, err := a.Keys.UserCreds("operator", nil, false)
		if err != nil {
			return err
		}
		if err := a.RecordOperatorCreds(ctx); err != nil {
			return err
		}
		if err := os.WriteFile(*out, creds, 0o600); err != nil {
			return fmt.Errorf("write creds: %w", err)
		}
		abs, _ := filepath.Abs(*out)
		fmt.Fprintf(stdout, "operator credentials written to %s (keep them secret). Use them with the nats CLI:\n", abs)
		fmt.Fprintf(stdout, "  nats context save relay --server %s --creds %s --select\n  nats stream ls\n", a.NATSURL, abs)
		return nil
	})
}

// logger is the relay's slog handler: text to stderr.
func logger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func cmdClinicShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	slug, data, err := slugCommand("show", args, stderr)
	if err != nil {
		return err
	}
	return withAdmin(ctx, data, func(ctx context.Context, a *adminSession) error {
		c, key, err := a.Show(ctx, slug)
		if err != nil {
			return fieldError(err)
		}
		state := "active"
		if c.Revoked {
			state = "revoked"
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "slug:\t%s\nname:\t%s\ntimezone:\t%s\n", c.ID, c.Name, c.TimeZone)
		if country := c.Country(); country != "" {
			fmt.Fprintf(tw, "country:\t%s\t(of the time zone: phone numbers without a country code are read as %[1]s's)\n", country)
		}
		fmt.Fprintf(tw, "state:\t%s\n", state)
		if key == "" {
			fmt.Fprintln(tw, "seal key:\tnone yet (its agent has not connected): it takes no requests")
		} else {
			fmt.Fprintf(tw, "seal key:\t%s\nfingerprint:\t%s\t(the clinic's console must show the same)\n", key, services.Fingerprint(key))
		}
		hb, ok, err := a.Seen(ctx, slug)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(tw, "agent:\tnever seen")
			return tw.Flush()
		}
		health := "healthy"
		if !hb.Healthy {
			health = "NOT healthy: " + hb.Problem
		}
		fmt.Fprintf(tw, "agent:\t%s connector, last seen %s, %s\n", hb.Connector, hb.At.Format(time.RFC3339), health)
		if hb.Rejected != "" {
			fmt.Fprintf(tw, "data:\t%s\t(see the agent's log)\n", hb.Rejected)
		}
		return tw.Flush()
	})
}

func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("backup", stderr)
	data := targetFlags(fs)
	out := fs.String("out", "", "archive to write (encrypted with a key derived from the operator's seed)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("backup needs --out FILE: %w", errUsage)
	}
	if err := CheckDataDir(data.dir); err != nil {
		return err
	}
	n, err := Backup(ctx, *data, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup of %s written to %s (%d records, encrypted); restore needs %s\n", data.dir, *out, n,
		filepath.Join(data.dir, "auth", "operator.nk"))
	return nil
}

func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("restore", stderr)
	data := fs.String("data", "./data", "new, empty relay data dir")
	opKey := fs.String("operator-key", "", "the operator's seed (DATA/auth/operator.nk of the relay backed up)")
	keyFile := fs.String("encryption-key-file", "", "encrypt the restored JetStream store with the key in FILE")
	prev := fs.String("previous-data", "", "the data dir of the relay the backup replaces: clinics it revoked or purged since the backup stay so")
	asBackedUp := fs.Bool("as-backed-up", false, "no previous data dir: clinics revoked or purged since the backup come back (listed)")
	var in string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		in, args = args[0], args[1:]
	}
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if in == "" {
		in = fs.Arg(0)
	}
	if in == "" || *opKey == "" {
		return fmt.Errorf("restore needs FILE and --operator-key FILE: %w", errUsage)
	}
	key, err := storeKey(*data, *keyFile, false)
	if err != nil {
		return err
	}
	if *prev != "" && *asBackedUp {
		return fmt.Errorf("--previous-data and --as-backed-up exclude each other: %w", errUsage)
	}
	rep, err := Restore(ctx, RestoreOptions{In: in, OperatorKey: *opKey, Dir: *data, Key: key, Previous: *prev,
		AsBackedUp: *asBackedUp})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %d messages into %s\n", rep.Messages, *data)
	if *prev != "" {
		fmt.Fprintf(stdout, "carried over from %s: %d agent keys revoked; revoked again: %s; purged again: %s\n", *prev,
			rep.Revocations, listOrNone(rep.Revoked), listOrNone(rep.Purged))
	} else {
		fmt.Fprintf(stdout, "WARNING: restored as backed up: any clinic revoked or purged since the backup is active again; "+
			"active clinics: %s\n", listOrNone(rep.Active))
	}
	fmt.Fprintf(stdout, "seal keys dropped: %d; each clinic takes requests again once its agent reconnects and publishes its key\n",
		rep.SealKeys)
	fmt.Fprintf(stdout, "start it with relay serve --data %s\n", *data)
	return nil
}

// listOrNone is the names, comma-separated, or "none".
func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// cmdNotices lists the email notices the relay gave up on after their last
// attempt (IDs and the mail server's reply code only, never an address).
func cmdNotices(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("notices", stderr)
	data := targetFlags(fs)
	failed := fs.Bool("failed", false, "list the notices given up on")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if !*failed {
		return fmt.Errorf("notices needs --failed: %w", errUsage)
	}
	return withAdmin(ctx, *data, func(ctx context.Context, a *adminSession) error {
		list, err := notify.FailedNotices(ctx, a.JS)
		for _, f := range list {
			fmt.Fprintf(stdout, "%s  %-9s %-16s %s  after %d attempts: %s\n", f.At.Format(time.RFC3339), f.Notice.Kind,
				f.Notice.ClinicID, f.Notice.RequestID, f.Attempts, f.Error)
		}
		if err == nil && len(list) == 0 {
			fmt.Fprintln(stdout, "no failed notices")
		}
		return err
	})
}

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit", stderr)
	data := targetFlags(fs)
	clinic := fs.String("clinic", "", "the clinic whose trail to print (_relay for the relay's own)")
	since := fs.Duration("since", 0, "only events this recent, e.g. 720h (default: all)")
	format := fs.String("format", "text", "text, json (one event a line) or fhir (FHIR R4 AuditEvent resources)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *clinic == "" || *format != "text" && *format != "json" && *format != "fhir" {
		return fmt.Errorf("audit needs --clinic SLUG and --format text, json or fhir: %w", errUsage)
	}
	if *clinic != services.AuditClinicRelay {
		if err := subjects.ValidClinicID(*clinic); err != nil {
			return err
		}
	}
	var from time.Time
	if *since > 0 {
		from = time.Now().Add(-*since)
	}
	return withAdmin(ctx, *data, func(ctx context.Context, a *adminSession) error {
		enc := json.NewEncoder(stdout)
		var err error
		rerr := cjs.ReadAudit(ctx, a.JS, *clinic, from, func(ev services.AuditEvent) {
			if err != nil {
				return
			}
			switch *format {
			case "json":
				err = enc.Encode(ev)
			case "fhir":
				err = enc.Encode(ev.FHIR())
			default:
				actor := ev.Actor
				if ev.User != "" {
					actor += ":" + ev.User
				}
				_, err = fmt.Fprintf(stdout, "%s  %-18s %-8s %s %s %s\n", ev.At.Format(time.RFC3339), ev.Action, actor,
					ev.RequestID, ev.IP, ev.Detail)
			}
		})
		return errors.Join(rerr, err)
	})
}

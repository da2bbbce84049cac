package integration

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	agentapp "github.com/clinicrelay/clinicrelay/cmd/clinic-agent/app"
	"github.com/clinicrelay/clinicrelay/cmd/relay/app"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/jetstream/node"
)

// docBlock is a fenced block of a doc whose info string is "sh doctest": a
// shell snippet the docs promise runs as written.
type docBlock struct {
	file  string
	line  int
	lines []docLine
}

// docLine is one command of a block, continuations joined; a comment
// `# prints "TEXT"` says its output must hold TEXT.
type docLine struct{ cmd, prints string }

// printsComment is the comment that names what a command prints.
var printsComment = regexp.MustCompile(`#\s*prints\s+"([^"]+)"`)

// docBlocks reads the doctest blocks of README.md and docs/*.md.
func docBlocks(t *testing.T) []docBlock {
	t.Helper()
	files, _ := filepath.Glob("../docs/*.md")
	var blocks []docBlock
	for _, f := range append([]string{"../README.md"}, files...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur *docBlock
		pending := ""
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			switch {
			case cur == nil && strings.TrimSpace(line) == "```sh doctest":
				cur = &docBlock{file: filepath.Base(f), line: n}
			case cur != nil && strings.TrimSpace(line) == "```":
				blocks = append(blocks, *cur)
				cur = nil
			case cur != nil:
				if l, ok := strings.CutSuffix(line, `\`); ok {
					pending += l + " "
					continue
				}
				full := pending + line
				if cmd := strings.TrimSpace(stripComment(full)); cmd != "" {
					dl := docLine{cmd: cmd}
					if m := printsComment.FindStringSubmatch(full); m != nil {
						dl.prints = m[1]
					}
					cur.lines = append(cur.lines, dl)
				}
				pending = ""
			}
		}
	}
	return blocks
}

// stripComment drops a "# comment" outside quotes.
func stripComment(s string) string {
	quote := rune(0)
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i]
		}
	}
	return s
}

// shellWords splits a command line as sh would, for the quoting the docs use.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	quote, in := rune(0), false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

// localAddr is a listen address on this machine, which the test moves to a
// free port.
var localAddr = regexp.MustCompile(`^(127\.0\.0\.1|0\.0\.0\.0|localhost):\d+$`)

// TestDocs_Snippets runs every "sh doctest" block of the README and the docs
// as written, in a fresh directory: `relay` and `clinic-agent` lines run
// those commands (`go run ./cmd/relay` too), a line ending in `&` runs in
// the background until the block ends, and listen addresses move to free
// ports. Every foreground command must succeed, and print what a
// `# prints "TEXT"` comment says, so a doc cannot drift from the code.
func TestDocs_Snippets(t *testing.T) {
	blocks := docBlocks(t)
	if len(blocks) == 0 {
		t.Fatal("no doctest blocks found")
	}
	for _, b := range blocks {
		t.Run(b.file+":"+strconv.Itoa(b.line), func(t *testing.T) {
			t.Chdir(t.TempDir())
			ctx, cancel := context.WithCancel(context.Background())
			var background []chan int
			defer func() {
				cancel()
				for _, done := range background {
					<-done
				}
			}()
			for _, dl := range b.lines {
				line := dl.cmd
				words := shellWords(line)
				bg := words[len(words)-1] == "&"
				if bg {
					words = words[:len(words)-1]
				}
				if len(words) > 2 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/relay" {
					words = append([]string{"relay"}, words[3:]...)
				}
				for i, w := range words {
					if localAddr.MatchString(w) {
						words[i] = "127.0.0.1:0"
					}
				}
				var main func(context.Context, []string, io.Writer, io.Writer) int
				switch words[0] {
				case "relay":
					main = func(ctx context.Context, args []string, out, errOut io.Writer) int {
						return app.Main(ctx, args, out, errOut)
					}
				case "clinic-agent":
					main = func(ctx context.Context, args []string, out, errOut io.Writer) int {
						return agentapp.Main(ctx, args, out, errOut)
					}
				default:
					t.Fatalf("%s:%d: cannot run %q in a doctest", b.file, b.line, line)
				}
				args := words[1:]
				var out, errOut strings.Builder
				if !bg {
					if code := main(ctx, args, &out, &errOut); code != 0 {
						t.Fatalf("%s:%d: %q: exit %d\n%s%s", b.file, b.line, line, code, out.String(), errOut.String())
					}
					if dl.prints != "" && !strings.Contains(out.String(), dl.prints) {
						t.Errorf("%s:%d: %q printed no %q:\n%s", b.file, b.line, line, dl.prints, out.String())
					}
					continue
				}
				if args[0] == "serve" || args[0] == "demo" {
					args = withFreePorts(args)
				}
				done := make(chan int, 1)
				background = append(background, done)
				go func() { done <- main(ctx, args, io.Discard, io.Discard) }()
				dir := flagValue(args, "--data", "./data")
				poll.For(t, 30*time.Second, func() error {
					_, err := node.ReadRunInfo(dir)
					return err
				})
			}
		})
	}
}

// withFreePorts adds free listen addresses for what serve or demo would
// otherwise take on fixed ports.
func withFreePorts(args []string) []string {
	for _, f := range []string{"--http", "--nats-listen", "--console"} {
		if f == "--console" && args[0] != "demo" {
			continue
		}
		if flagValue(args, f, "") == "" {
			args = append(args, f, "127.0.0.1:0")
		}
	}
	return args
}

// flagValue is the value of flag f in args ("--f V" or "--f=V"), or def.
func flagValue(args []string, f, def string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, f+"="); ok {
			return v
		}
		if a == f && i+1 < len(args) {
			return args[i+1]
		}
	}
	return def
}

// TestDocs_QuickStart: the README's quick start is its two commands, the
// demo and scripts/test (which .ci/run runs); the demo, run as written but on
// free ports, prints what the README shows, line for line but the addresses
// and the time, and serves the demo clinic and its front desk.
func TestDocs_QuickStart(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(readme), "## Quick start")
	_, block, _ := strings.Cut(after, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	var cmds []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		cmds = append(cmds, strings.TrimSpace(stripComment(l)))
	}
	if len(cmds) != 2 || cmds[0] != "go run ./cmd/relay demo" || cmds[1] != "scripts/test" {
		t.Fatalf("the quick start is %q, want the demo and scripts/test", cmds)
	}
	if ci, _ := os.ReadFile("../.ci/run"); !regexp.MustCompile(`(?m)^scripts/test$`).Match(ci) {
		t.Error(".ci/run does not run the README's test command")
	}
	_, shown, _ := strings.Cut(after, "`relay demo` prints where everything is:\n\n```\n")
	shown, _, _ = strings.Cut(shown, "```")

	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	var out logSink
	done := make(chan int, 1)
	go func() {
		done <- app.Main(ctx, withFreePorts([]string{"demo"}), &out, io.Discard)
	}()
	defer func() { cancel(); <-done }()
	poll.For(t, 60*time.Second, func() error {
		if !strings.Contains(out.String(), "Ctrl-C stops it.") {
			return errors.New("the demo has not said it is ready")
		}
		return nil
	})
	label := regexp.MustCompile(`(?m)^\s*([a-zA-Z' ]+):\s`)
	if got, want := label.FindAllStringSubmatch(out.String(), -1), label.FindAllStringSubmatch(shown, -1); len(got) != len(want) {
		t.Errorf("the demo prints %d labelled lines, the README shows %d:\n%s", len(got), len(want), out.String())
	} else {
		for i := range got {
			if got[i][1] != want[i][1] {
				t.Errorf("line %d: the demo prints %q, the README shows %q", i, got[i][1], want[i][1])
			}
		}
	}
	urls := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*([a-z' ]+):\s+(\S+)$`).FindAllStringSubmatch(out.String(), -1) {
		urls[m[1]] = m[2]
	}
	web := newClient(t, strings.TrimSuffix(urls["patients' site"], "/"))
	firstSlot(t, web, "demo")
	for _, u := range []string{urls["demo clinic"], urls["front desk"]} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", u, resp.StatusCode)
		}
	}
}

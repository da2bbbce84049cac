package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
)

// roleEnv makes the bench binary run as one of its children: the relay
// (`relay serve`) or the bare Echo baseline, each in a process of its own
// like in production, so its memory and CPU are its own.
const roleEnv = "CLINICRELAY_BENCH_ROLE"

// child is a process the bench started from its own binary.
type child struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

// startChild runs this binary as role with args, logging to logPath.
func startChild(role, logPath string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	c := &child{cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait(); f.Close() }()
	return c, nil
}

// awaitHTTP polls url until it answers 200; it returns how long that took.
func (c *child) awaitHTTP(ctx context.Context, url string, t0 time.Time, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case err := <-c.done:
			return 0, fmt.Errorf("exited before serving (%v): %s", err, c.tail())
		case <-ctx.Done():
			return 0, ctx.Err()
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0), nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("not serving %s after %s: %s", url, limit, c.tail())
}

// stop sends SIGTERM and returns how long the process took to exit.
func (c *child) stop(limit time.Duration) (time.Duration, error) {
	t0 := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case err := <-c.done:
		if err != nil {
			return time.Since(t0), fmt.Errorf("exit: %w: %s", err, c.tail())
		}
		return time.Since(t0), nil
	case <-time.After(limit):
		c.cmd.Process.Kill()
		<-c.done
		return time.Since(t0), fmt.Errorf("still running %s after SIGTERM; killed", limit)
	}
}

// memory reads the process's resident set now and at its peak, in MiB.
func (c *child) memory() (rss, peak float64) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(c.cmd.Process.Pid), "status"))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "VmHWM":
			peak = kb / 1024
		}
	}
	return rss, peak
}

func (c *child) tail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// serveEcho is the bare Echo baseline: one route that answers the bytes of
// the file it is given, as the relay's slots API would.
func serveEcho(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 2 {
		return errors.New("usage: ADDR FILE")
	}
	body, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/slots", func(c echo.Context) error { return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body) })
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: e}
	go func() { <-ctx.Done(); srv.Close() }()
	fmt.Fprintln(stdout, "bare echo on", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

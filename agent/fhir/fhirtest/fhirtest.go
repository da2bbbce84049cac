// Package fhirtest runs a real FHIR R4 server for tests: Medplum's FHIR
// router over its in-memory repository (agent/fhir/testdata/fhirserver, npm
// packages from its lockfile, installed by .ci/run), and plays the practice's
// staff against it: schedules, slots, and the front desk's decisions.
package fhirtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Server is a running FHIR server.
type Server struct {
	t *testing.T
	// URL is the FHIR base, e.g. http://127.0.0.1:4321/fhir/R4.
	URL string
}

// dir is agent/fhir/testdata/fhirserver, found from this file.
func dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "fhirserver")
}

// Start starts the server on a random port; it stops at the end of the test.
// Node and the npm packages must be installed: the test fails, not skips,
// without them.
func Start(t *testing.T) *Server {
	t.Helper()
	d := dir()
	if _, err := os.Stat(filepath.Join(d, "node_modules", "@medplum", "fhir-router")); err != nil {
		t.Fatalf("the FHIR test server's packages are missing: run `npm ci --prefix agent/fhir/testdata/fhirserver` (.ci/run does): %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not on PATH; .ci/run installs it")
	}
	cmd := exec.Command(node, filepath.Join(d, "server.js"), "0")
	cmd.Dir = d
	cmd.Stderr = &testWriter{t: t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the FHIR server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				lines <- u
			}
		}
	}()
	select {
	case u := <-lines:
		return &Server{t: t, URL: u}
	case <-time.After(30 * time.Second):
		t.Fatal("the FHIR server did not say it was listening within 30s")
		return nil
	}
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("fhir server: %s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// Do sends a FHIR request and decodes the answer into out (if not nil); it
// returns the status code. hdr may carry If-Match or If-None-Exist.
func (s *Server) Do(method, path string, body any, hdr map[string]string, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, s.URL+"/"+strings.TrimPrefix(path, "/"), rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: %d %q: %v", method, path, res.StatusCode, raw, err)
		}
	}
	return res.StatusCode
}

// Resource is a FHIR resource as a generic object.
type Resource map[string]any

// ID is the resource's id.
func (r Resource) ID() string { s, _ := r["id"].(string); return s }

// Version is the resource's meta.versionId.
func (r Resource) Version() string {
	m, _ := r["meta"].(map[string]any)
	s, _ := m["versionId"].(string)
	return s
}

// Create creates a resource and returns it as stored.
func (s *Server) Create(res Resource) Resource {
	s.t.Helper()
	var out Resource
	if code := s.Do(http.MethodPost, res["resourceType"].(string), res, nil, &out); code != http.StatusCreated {
		s.t.Fatalf("create %s: %d %v", res["resourceType"], code, out)
	}
	return out
}

// Read reads typ/id.
func (s *Server) Read(typ, id string) Resource {
	s.t.Helper()
	var out Resource
	if code := s.Do(http.MethodGet, typ+"/"+id, nil, nil, &out); code != http.StatusOK {
		s.t.Fatalf("read %s/%s: %d", typ, id, code)
	}
	return out
}

// Update writes res over its current version (If-Match) and returns the
// status code: 200, or 412 when someone changed it first.
func (s *Server) Update(res Resource) int {
	s.t.Helper()
	return s.Do(http.MethodPut, res["resourceType"].(string)+"/"+res.ID(), res,
		map[string]string{"If-Match": `W/"` + res.Version() + `"`}, nil)
}

// Search returns every resource of a search (one page of up to 1000).
func (s *Server) Search(typ string, q url.Values) []Resource {
	s.t.Helper()
	q.Set("_count", "1000")
	var b struct {
		Entry []struct {
			Resource Resource `json:"resource"`
		} `json:"entry"`
	}
	if code := s.Do(http.MethodGet, typ+"?"+q.Encode(), nil, nil, &b); code != http.StatusOK {
		s.t.Fatalf("search %s: %d", typ, code)
	}
	out := make([]Resource, 0, len(b.Entry))
	for _, e := range b.Entry {
		out = append(out, e.Resource)
	}
	return out
}

// Schedule creates a Practitioner named name and an active Schedule for it;
// it returns the Schedule's id.
func (s *Server) Schedule(name string) string {
	s.t.Helper()
	p := s.Create(Resource{"resourceType": "Practitioner", "name": []any{map[string]any{"text": name}}})
	sc := s.Create(Resource{"resourceType": "Schedule", "active": true,
		"actor": []any{map[string]any{"reference": "Practitioner/" + p.ID(), "display": name}}})
	return sc.ID()
}

// Slots creates n free slots of length d on schedule from start, one after
// another, and returns their ids.
func (s *Server) Slots(schedule string, start time.Time, n int, d time.Duration) []string {
	s.t.Helper()
	var ids []string
	for i := range n {
		st := start.Add(time.Duration(i) * d)
		r := s.Create(Resource{"resourceType": "Slot", "schedule": map[string]any{"reference": "Schedule/" + schedule},
			"status": "free", "start": st.UTC().Format(time.RFC3339), "end": st.Add(d).UTC().Format(time.RFC3339)})
		ids = append(ids, r.ID())
	}
	return ids
}

// Appointment is the Appointment the connector made for request id; the test
// fails if there is not exactly one.
func (s *Server) Appointment(requestID string) Resource {
	s.t.Helper()
	got := s.Search("Appointment", url.Values{"identifier": {"https://clinicrelay.org/fhir/request-id|" + requestID}})
	if len(got) != 1 {
		s.t.Fatalf("%d Appointments for request %s, want 1", len(got), requestID)
	}
	return got[0]
}

// String describes the server for logs.
func (s *Server) String() string { return fmt.Sprintf("FHIR server at %s", s.URL) }

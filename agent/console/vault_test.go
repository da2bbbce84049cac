package console_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
)

// openAt opens the console store at path with key (nil: none).
func openAt(path string, key []byte) (*console.Console, error) {
	return console.Open(console.Config{Path: path, Key: key, Logger: slog.New(slog.DiscardHandler)})
}

// onDisk reports which of the patient's values the file at path holds.
func onDisk(t *testing.T, path string, values ...string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, v := range values {
		if bytes.Contains(b, []byte(v)) {
			found = append(found, v)
		}
	}
	return found
}

func TestStore_SealedAtRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.db")
	key, _ := console.ParseKey(console.NewKey())
	c, err := openAt(path, key)
	if err != nil {
		t.Fatal(err)
	}
	req := request(1, "dr-lee", at(3, 9, 0))
	if err := c.Store(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	c.Close()
	phi := []string{req.Name, req.Email, req.BirthDate, "Check-up", "416 555"}
	if found := onDisk(t, path, phi...); len(found) > 0 {
		t.Fatalf("the sealed store's file holds %q", found)
	}
	if !strings.Contains(string(mustRead(t, path)), req.ID) {
		t.Fatal("the request's ID is not in the file: the test reads the wrong file")
	}

	if _, err := openAt(path, nil); err == nil || !strings.Contains(err.Error(), console.KeyEnv) {
		t.Fatalf("open without the key: %v, want an error naming %s", err, console.KeyEnv)
	}
	other, _ := console.ParseKey(console.NewKey())
	if _, err := openAt(path, other); err == nil || !strings.Contains(err.Error(), "not the key") {
		t.Fatalf("open with another key: %v", err)
	}
	c, err = openAt(path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := c.Requests(t.Context(), console.StatusAll)
	if err != nil || len(list) != 1 || list[0].Email != req.Email || list[0].Reason != req.Reason {
		t.Fatalf("reopened with its key: %+v %v", list, err)
	}
}

// A store kept in clear is sealed the first time a key is given, and no page
// of its file keeps the records in clear.
func TestStore_SealsAStoreInClear(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.db")
	c, err := openAt(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 20 {
		req := request(i, "dr-lee", at(3, 9, 0).Add(30*time.Duration(i)*time.Minute))
		if err := c.Store(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		names = append(names, req.Email)
	}
	c.Close()
	if found := onDisk(t, path, names...); len(found) != len(names) {
		t.Fatalf("in clear, the file holds %d of %d emails: the test cannot tell", len(found), len(names))
	}
	key, _ := console.ParseKey(console.NewKey())
	c, err = openAt(path, key)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := c.Requests(t.Context(), console.StatusAll)
	c.Close()
	if len(list) != 20 {
		t.Fatalf("after sealing: %d requests, want 20", len(list))
	}
	if found := onDisk(t, path, names...); len(found) > 0 {
		t.Fatalf("after sealing, the file still holds %q", found)
	}
	if _, err := os.Stat(path + ".sealing"); !os.IsNotExist(err) {
		t.Fatalf("the compaction's file is left: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	if _, err := console.ParseKey(console.NewKey() + "\n"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("z", 64), strings.Repeat("a", 62)} {
		if _, err := console.ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

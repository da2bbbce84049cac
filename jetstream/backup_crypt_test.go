package jetstream_test

import (
	"bytes"
	"strings"
	"testing"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
)

// TestBackupSeal: a backup opens with the operator key that sealed it only,
// shows no plaintext, and refuses a truncated, altered or foreign file with
// words an operator can act on.
func TestBackupSeal(t *testing.T) {
	key := cjs.BackupKey([]byte("SOAOPERATORSEEDONE\n"))
	plain := []byte(`{"kind":"msg","data":"Ada Patient"}` + "\n")
	sealed, err := cjs.SealBackup(key, plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("Ada Patient")) {
		t.Fatal("the sealed backup shows its plaintext")
	}
	if got, err := cjs.OpenBackup(cjs.BackupKey([]byte("  SOAOPERATORSEEDONE  ")), sealed); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open with the same seed (spaces around it): %q, %v", got, err)
	}
	if again, _ := cjs.SealBackup(key, plain); bytes.Equal(again, sealed) {
		t.Error("two seals of one backup are equal: the nonce repeats")
	}
	altered := bytes.Clone(sealed)
	altered[len(altered)-1] ^= 1
	for _, tt := range []struct {
		name   string
		key    []byte
		sealed []byte
		want   string
	}{
		{"ErrOtherKey", cjs.BackupKey([]byte("SOAOPERATORSEEDTWO")), sealed, "does not open with this operator key"},
		{"ErrAltered", key, altered, "or was altered"},
		{"ErrTruncated", key, sealed[:len("CLINICRELAY-BACKUP-1\n")+3], "truncated"},
		{"ErrNotABackup", key, plain, "not a clinicrelay backup"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := cjs.OpenBackup(tt.key, tt.sealed); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("OpenBackup = %v, want %q", err, tt.want)
			}
		})
	}
}

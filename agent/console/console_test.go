package console_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/services"
)

func TestConsole_Store(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		e := newEnv(t)
		req := request(1, "dr-lee", at(3, 9, 0))
		e.mustStore(t, req)
		if !changed(e.c) {
			t.Fatalf("Changed after Store: got nothing, want a value")
		}
		got, err := e.c.Requests(t.Context(), console.StatusPending)
		if err != nil || len(got) != 1 {
			t.Fatalf("pending requests = %v, %v; want 1", got, err)
		}
		if got[0].ID != req.ID || got[0].Name != req.Name || got[0].ProviderID != "dr-lee" || !got[0].Start.Equal(at(3, 9, 0)) {
			t.Errorf("entry = %+v, want request %s of dr-lee at 09:00", got[0], req.ID)
		}
	})
	t.Run("Idempotent", func(t *testing.T) {
		e := newEnv(t)
		req := request(1, "dr-lee", at(3, 9, 0))
		e.mustStore(t, req)
		drain(e.c)
		again := req
		again.Name, again.SlotID = "Someone Else", services.SlotID("dr-lee", at(3, 10, 0))
		e.mustStore(t, again)
		if changed(e.c) {
			t.Errorf("Changed after a second Store: got a value, want none")
		}
		got, _ := e.c.Requests(t.Context(), console.StatusAll)
		if len(got) != 1 || got[0].Name != req.Name || got[0].SlotID != req.SlotID {
			t.Errorf("requests = %+v, want only the first store", got)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e := newEnv(t)
		bad := request(1, "dr-lee", at(3, 9, 0))
		bad.ID = "not-an-id"
		wantCode(t, e.c.Store(t.Context(), bad), services.EInvalid, "")
		bad = request(2, "dr-lee", at(3, 9, 0))
		bad.SlotID = "dr-lee_tomorrow"
		wantCode(t, e.c.Store(t.Context(), bad), services.EInvalid, "")
	})
}

func TestConsole_Store_SlotTaken(t *testing.T) {
	e := newEnv(t)
	first, second := request(1, "dr-lee", at(3, 9, 0)), request(2, "dr-lee", at(3, 9, 0))
	e.mustStore(t, first)
	e.mustStore(t, second)

	pending, err := e.c.PendingOutcomes(t.Context())
	if err != nil {
		t.Fatalf("PendingOutcomes: %v", err)
	}
	want := services.Status{
		RequestID: second.ID, ClinicID: "maple", SlotID: second.SlotID,
		State: services.StateDeclined, Reason: console.ReasonSlotTaken, UpdatedAt: at(3, 8, 0).UTC(),
	}
	if len(pending) != 1 || pending[0] != want {
		t.Fatalf("PendingOutcomes = %+v, want [%+v]", pending, want)
	}
	got, _ := e.c.Requests(t.Context(), console.StatusPending)
	if len(got) != 1 || got[0].ID != first.ID {
		t.Errorf("pending = %+v, want only %s", got, first.ID)
	}

	// A slot proposed to a patient is taken too.
	if _, err := e.c.Propose(t.Context(), first.ID, services.SlotID("dr-lee", at(3, 9, 30))); err != nil {
		t.Fatalf("Propose: %v", err)
	}
	third := request(3, "dr-lee", at(3, 9, 30))
	e.mustStore(t, third)
	all, _ := e.c.Requests(t.Context(), console.StatusDeclined)
	if ids := entryIDs(all); !slices.Contains(ids, third.ID) {
		t.Errorf("declined = %v, want %s among them", ids, third.ID)
	}
}

func TestConsole_FreeSlots(t *testing.T) {
	e := newEnv(t)
	e.clock.Set(at(3, 10, 10))
	free := func() []string {
		t.Helper()
		providers, slots, err := e.c.FreeSlots(t.Context(), at(3, 0, 0), at(4, 0, 0), toronto)
		if err != nil {
			t.Fatalf("FreeSlots: %v", err)
		}
		if len(providers) != 2 {
			t.Fatalf("providers = %v, want 2", providers)
		}
		sorted := slices.IsSortedFunc(slots, func(a, b services.Slot) int {
			if n := a.Start.Compare(b.Start); n != 0 {
				return n
			}
			return strings.Compare(a.ProviderID, b.ProviderID)
		})
		if !sorted {
			t.Fatalf("slots are not sorted by start then provider: %v", slots)
		}
		var ids []string
		for _, s := range slots {
			ids = append(ids, s.ID)
		}
		return ids
	}
	lee := func(h, m int) string { return services.SlotID("dr-lee", at(3, h, m)) }

	pending, booked, proposed := request(1, "dr-lee", at(3, 10, 30)), request(2, "dr-lee", at(3, 11, 0)), request(3, "dr-lee", at(3, 11, 30))
	for _, r := range []services.Request{pending, booked, proposed} {
		e.mustStore(t, r)
	}
	if _, err := e.c.Confirm(t.Context(), booked.ID); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	if _, err := e.c.Propose(t.Context(), proposed.ID, lee(13, 0)); err != nil {
		t.Fatalf("Propose: %v", err)
	}

	got := free()
	for _, id := range []string{lee(9, 0), lee(10, 0), lee(10, 30), lee(11, 0), lee(13, 0)} {
		if slices.Contains(got, id) {
			t.Errorf("free slots include %s, want it excluded (past, pending, booked or proposed)", id)
		}
	}
	for _, id := range []string{lee(11, 30), lee(13, 30), services.SlotID("dr-patel", at(3, 10, 20))} {
		if !slices.Contains(got, id) {
			t.Errorf("free slots lack %s, want it free", id)
		}
	}

	if _, err := e.c.Decline(t.Context(), pending.ID, "The doctor is away"); err != nil {
		t.Fatalf("Decline: %v", err)
	}
	if got := free(); !slices.Contains(got, lee(10, 30)) {
		t.Errorf("free slots after Decline lack %s, want it free again", lee(10, 30))
	}
}

func TestConsole_Decide(t *testing.T) {
	e := newEnv(t)
	req := request(1, "dr-lee", at(3, 9, 0))
	other := request(2, "dr-lee", at(3, 9, 30))
	e.mustStore(t, req)
	e.mustStore(t, other)
	ctx := t.Context()

	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := e.c.Confirm(ctx, services.RequestIDFor("nobody"))
		wantCode(t, err, services.ENotFound, "")
	})
	t.Run("ErrReason", func(t *testing.T) {
		_, err := e.c.Decline(ctx, req.ID, "  ")
		wantCode(t, err, services.EInvalid, "reason")
		_, err = e.c.Decline(ctx, req.ID, strings.Repeat("é", console.MaxReasonLen+1))
		wantCode(t, err, services.EInvalid, "reason")
		// The relay takes one plain line (STATUS): what it would refuse
		// is refused here, where the staff can fix it.
		for _, reason := range []string{"Away\nback Monday", "Away\tMonday", "Away \u202eyadnoM"} {
			_, err = e.c.Decline(ctx, req.ID, reason)
			wantCode(t, err, services.EInvalid, "reason")
		}
	})
	t.Run("ErrSlot", func(t *testing.T) {
		for _, slot := range []string{
			"nonsense",
			services.SlotID("dr-lee", at(2, 23, 0)),   // past
			services.SlotID("dr-lee", at(3, 12, 30)),  // lunch
			services.SlotID("dr-nobody", at(4, 9, 0)), // no such provider
		} {
			_, err := e.c.Propose(ctx, req.ID, slot)
			wantCode(t, err, services.EInvalid, "slot_id")
		}
		_, err := e.c.Propose(ctx, req.ID, other.SlotID)
		wantCode(t, err, services.EConflict, "")
	})
	t.Run("ErrConflict", func(t *testing.T) {
		got, err := e.c.Confirm(ctx, req.ID)
		if err != nil || got.Status != console.StatusBooked {
			t.Fatalf("Confirm = %+v, %v; want booked", got, err)
		}
		_, err = e.c.Decline(ctx, req.ID, "changed my mind")
		wantCode(t, err, services.EConflict, "")
	})
}

func TestConsole_MarkPublished(t *testing.T) {
	e := newEnv(t)
	req := request(1, "dr-lee", at(3, 9, 0))
	e.mustStore(t, req)
	if _, err := e.c.Decline(t.Context(), req.ID, "Closed that day"); err != nil {
		t.Fatalf("Decline: %v", err)
	}
	pending, _ := e.c.PendingOutcomes(t.Context())
	if len(pending) != 1 || pending[0].Reason != "Closed that day" {
		t.Fatalf("PendingOutcomes = %+v, want the decline", pending)
	}

	stale := pending[0]
	stale.State = services.StateBooked
	if err := e.c.MarkPublished(t.Context(), stale); err != nil {
		t.Fatalf("MarkPublished(stale): %v", err)
	}
	if got, _ := e.c.PendingOutcomes(t.Context()); len(got) != 1 {
		t.Errorf("after a stale MarkPublished: %d pending, want 1", len(got))
	}

	if err := e.c.MarkPublished(t.Context(), pending[0]); err != nil {
		t.Fatalf("MarkPublished: %v", err)
	}
	if got, _ := e.c.PendingOutcomes(t.Context()); len(got) != 0 {
		t.Errorf("after MarkPublished: %+v pending, want none", got)
	}
	e.reopen(t)
	if got, _ := e.c.PendingOutcomes(t.Context()); len(got) != 0 {
		t.Errorf("after a restart: %+v pending, want none", got)
	}

	unknown := services.Status{RequestID: services.RequestIDFor("nobody"), State: services.StateBooked}
	wantCode(t, e.c.MarkPublished(t.Context(), unknown), services.ENotFound, "")
}

func TestConsole_SetProviders(t *testing.T) {
	e := newEnv(t)
	list := console.DemoProviders()
	list[1].SlotMinutes = 2
	wantCode(t, e.c.SetProviders(t.Context(), list), services.EInvalid, "providers[1].slot_minutes")

	list = console.DemoProviders()
	list[1].ID = list[0].ID
	wantCode(t, e.c.SetProviders(t.Context(), list), services.EInvalid, "providers[1].id")

	list = console.DemoProviders()[:1]
	list[0].Closures = []string{"2026-03-03"}
	if err := e.c.SetProviders(t.Context(), list); err != nil {
		t.Fatalf("SetProviders: %v", err)
	}
	if !changed(e.c) {
		t.Errorf("Changed after SetProviders: got nothing, want a value")
	}
	providers, slots, _ := e.c.FreeSlots(t.Context(), at(3, 0, 0), at(4, 0, 0), toronto)
	if len(providers) != 1 || len(slots) != 0 {
		t.Errorf("FreeSlots on a closure = %v, %v; want dr-lee and no slots", providers, slots)
	}
}

func TestConsole_SeedDemo(t *testing.T) {
	e := newEnv(t)
	list := console.DemoProviders()[1:]
	if err := e.c.SetProviders(t.Context(), list); err != nil {
		t.Fatalf("SetProviders: %v", err)
	}
	if err := e.c.SeedDemo(t.Context()); err != nil {
		t.Fatalf("SeedDemo: %v", err)
	}
	got, _ := e.c.Providers(t.Context())
	if len(got) != 1 || got[0].ID != "dr-patel" {
		t.Errorf("providers after SeedDemo = %+v, want dr-patel only (not reseeded)", got)
	}
}

func TestConsole_Restart(t *testing.T) {
	e := newEnv(t)
	booked, waiting := request(1, "dr-lee", at(3, 9, 0)), request(2, "dr-patel", at(3, 10, 0))
	e.mustStore(t, booked)
	e.mustStore(t, waiting)
	if _, err := e.c.Confirm(t.Context(), booked.ID); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	e.reopen(t)
	if fi, err := os.Stat(e.path); err != nil {
		t.Errorf("stat store: %v", err)
	} else if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("store file mode = %v, want 0600", got)
	}

	got, err := e.c.Requests(t.Context(), console.StatusAll)
	if err != nil {
		t.Fatalf("Requests: %v", err)
	}
	if len(got) != 2 || got[0].Status != console.StatusBooked || got[1].Status != console.StatusPending {
		t.Errorf("requests after restart = %+v, want booked then pending", got)
	}
	providers, _ := e.c.Providers(t.Context())
	if len(providers) != 2 {
		t.Errorf("providers after restart = %d, want 2", len(providers))
	}
	if out, _ := e.c.PendingOutcomes(t.Context()); len(out) != 1 || out[0].RequestID != booked.ID {
		t.Errorf("PendingOutcomes after restart = %+v, want the booking", out)
	}
	_, err = e.c.Propose(t.Context(), waiting.ID, booked.SlotID)
	wantCode(t, err, services.EConflict, "")
}

func TestConsole_LogsNoPHI(t *testing.T) {
	var buf bytes.Buffer
	c, err := console.Open(console.Config{
		Path:   filepath.Join(t.TempDir(), "console.db"),
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    (&clock{t: at(3, 8, 0)}).Now,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer c.Close()
	c.SetClinic(services.Clinic{ID: "maple", Name: "Maple Clinic", TimeZone: "America/Toronto"})
	ctx := t.Context()
	req := request(1, "dr-lee", at(3, 9, 0))
	_ = c.SeedDemo(ctx)
	_ = c.Store(ctx, req)
	_ = c.Store(ctx, req)
	_ = c.Store(ctx, request(2, "dr-lee", at(3, 9, 0)))
	_, _ = c.Decline(ctx, req.ID, "Doctor unavailable")

	logs := buf.String()
	if !strings.Contains(logs, req.ID) {
		t.Fatalf("logs lack the request ID; got:\n%s", logs)
	}
	for _, phi := range []string{req.Name, req.Phone, req.Email, req.BirthDate, req.Reason, "Number2"} {
		if strings.Contains(logs, phi) {
			t.Errorf("logs contain PHI %q:\n%s", phi, logs)
		}
	}
}

func entryIDs(list []console.Entry) []string {
	var ids []string
	for _, e := range list {
		ids = append(ids, e.ID)
	}
	return ids
}

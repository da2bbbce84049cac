package console_test

import "testing"

// TestPatientDetails_OnlyWhatTheClinicStandsBehind: anyone can type an
// address into a request, so a pending one fills no form; one booked does;
// and when booked requests with the address name two people (a family's
// shared address), none does.
func TestPatientDetails_OnlyWhatTheClinicStandsBehind(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	a, b := request(1, "dr-lee", at(4, 9, 0)), request(2, "dr-lee", at(4, 10, 0))
	a.Email, b.Email = "family@example.org", "family@example.org"
	if err := e.c.Store(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, found, err := e.c.PatientDetails(ctx, "family@example.org"); err != nil || found {
		t.Fatalf("a pending request's details: %v %v, want none", found, err)
	}
	if _, err := e.c.Confirm(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if d, found, err := e.c.PatientDetails(ctx, "Family@example.org"); err != nil || !found || d.Name != a.Name {
		t.Fatalf("a booked request's details: %+v %v %v, want %s's", d, found, err, a.Name)
	}
	if err := e.c.Store(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Confirm(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if d, found, _ := e.c.PatientDetails(ctx, "family@example.org"); found {
		t.Fatalf("two people on one address: %+v given, want none", d)
	}
}

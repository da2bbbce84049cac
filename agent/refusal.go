package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// refusal is a value the relay refused for a key, and why: it is not sent
// again until the connector's value changes.
type refusal struct{ value, why string }

// maxRefusalLines is how many refused keys the connector is shown; the
// last line counts the rest.
const maxRefusalLines = 10

// noteRefusal records that the relay refused value for key of kv (err wraps
// cjs.ErrRefused). A refused day is deleted, so the web stops offering the
// slots of the day's last accepted value, which the clinic may have given
// away since.
func (a *Agent) noteRefusal(ctx context.Context, kv *cjs.Bucket, key, value string, err error) {
	id := kv.Name() + "/" + key
	why := strings.TrimPrefix(err.Error(), cjs.ErrRefused.Error()+" "+key+": ")
	if r, ok := a.refused[id]; !ok || r.why != why {
		a.log.Error("the relay refused a write: patients online do not see it until it is fixed",
			"bucket", kv.Name(), "key", key, "why", why)
	}
	a.refused[id] = refusal{value: value, why: why}
	delete(a.published, id)
	if kv.Name() != subjects.BucketAvailability {
		return
	}
	if err := kv.Delete(ctx, key, 0); err != nil && !errors.Is(err, cjs.ErrNotFound) {
		a.log.Warn("drop refused day", "key", key, "err", err.Error())
	}
}

// forgetRefusals drops the refusals of keys in bucket that keep reports
// false: keys the agent no longer writes.
func (a *Agent) forgetRefusals(bucket string, keep func(key string) bool) {
	for id := range a.refused {
		if b, key, _ := strings.Cut(id, "/"); b == bucket && !keep(key) {
			delete(a.refused, id)
		}
	}
}

// noteFitted records what FitDay left out of date, and logs it when it
// changes.
func (a *Agent) noteFitted(date string, f cjs.Fitted) {
	if f == (cjs.Fitted{}) {
		delete(a.fitted, date)
		return
	}
	if a.fitted[date] != f {
		a.log.Warn("PMS data rejected: slots the relay would refuse are left out", "date", date,
			"skipped", f.Skipped, "why", f.Why, "cut", f.Cut)
	}
	a.fitted[date] = f
}

// rejected sums up what was left out, for the heartbeat ("" when nothing).
func (a *Agent) rejected() string {
	slots := 0
	for _, f := range a.fitted {
		slots += f.Skipped + f.Cut
	}
	if slots == 0 {
		return ""
	}
	return fmt.Sprintf("PMS data rejected: %s on %s", plural(slots, "slot"), plural(len(a.fitted), "day"))
}

// plural is "1 slot", "2 slots".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// reportRefusals tells a RefusalReporter connector, and the log, when the
// refused keys or the slots left out change.
func (a *Agent) reportRefusals() {
	all := map[string]string{}
	for id, r := range a.refused {
		all[id] = a.describe(id) + ": " + r.why
	}
	for date, f := range a.fitted {
		id := a.avail.Name() + "/" + subjects.AvailabilityKey(a.clinic, date)
		var says []string
		if f.Skipped > 0 {
			says = append(says, fmt.Sprintf("%d slots left out, the relay refuses them (%s)", f.Skipped, f.Why))
		}
		if f.Cut > 0 {
			says = append(says, fmt.Sprintf("the latest %d slots left out: a day carries at most %d bytes, %s",
				f.Cut, cjs.MaxDayBytes, cjs.DayTooBig))
		}
		all[id] = a.describe(id) + ": " + strings.Join(says, "; ")
	}
	ids := slices.Sorted(maps.Keys(all))
	lines := make([]string, 0, min(len(ids), maxRefusalLines))
	for i, id := range ids {
		if i == maxRefusalLines-1 && len(ids) > maxRefusalLines {
			lines = append(lines, fmt.Sprintf("and %d more", len(ids)-i))
			break
		}
		lines = append(lines, all[id])
	}
	shown := strings.Join(lines, "\n")
	if shown == a.shownRefusals {
		return
	}
	if len(lines) == 0 {
		a.log.Info("the relay takes every write again")
	}
	a.shownRefusals = shown
	if r, ok := a.conn.(connector.RefusalReporter); ok {
		r.Refused(lines)
	}
}

// describe names what a refused key carries, for the clinic's staff.
func (a *Agent) describe(id string) string {
	bucket, key, _ := strings.Cut(id, "/")
	suffix := strings.TrimPrefix(key, a.clinic+".")
	switch bucket {
	case subjects.BucketAvailability:
		return "free slots of " + suffix
	case subjects.BucketStatus:
		return "outcome of request " + suffix
	case subjects.BucketClinics:
		return "the clinic's " + suffix
	}
	return key
}

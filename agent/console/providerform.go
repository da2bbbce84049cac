package console

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// formDays are the weekdays of the provider form, in the order shown.
var formDays = []struct{ Key, Label string }{
	{"mon", "Monday"}, {"tue", "Tuesday"}, {"wed", "Wednesday"}, {"thu", "Thursday"},
	{"fri", "Friday"}, {"sat", "Saturday"}, {"sun", "Sunday"},
}

// providerForm is one provider as the page's form shows it: text as typed.
type providerForm struct {
	ID, Name, SlotMinutes, Closures string
	Days                            []dayField
	// The booking policy's numbers, as typed ("" for 0: no limit).
	Policy []policyField
	New    bool // the "add a provider" form
}

type dayField struct{ Key, Label, Value string }

// policyField is one number of the booking policy on the form; set puts
// it into a policy.
type policyField struct {
	Key, Label, Hint, Value string
	set                     func(*services.BookingPolicy, int)
}

// policyFields are the policy's numbers as the form shows them.
func policyFields(p services.BookingPolicy) []policyField {
	show := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	return []policyField{
		{"notice_minutes", "Minimum notice (minutes)", "how long ahead a patient must request, e.g. 120", show(p.NoticeMinutes),
			func(p *services.BookingPolicy, v int) { p.NoticeMinutes = v }},
		{"horizon_days", "Booking horizon (days)", "how far ahead a patient may request, e.g. 60", show(p.HorizonDays),
			func(p *services.BookingPolicy, v int) { p.HorizonDays = v }},
		{"cutoff_hours", "Cancellation cutoff (hours)", "a booked visit is cancelled or moved online until this long before it, e.g. 24",
			show(p.CutoffHours), func(p *services.BookingPolicy, v int) { p.CutoffHours = v }},
		{"grace_minutes", "Grace after booking (minutes)", "a patient may still cancel this long after you book, whatever the cutoff, e.g. 15",
			show(p.GraceMinutes), func(p *services.BookingPolicy, v int) { p.GraceMinutes = v }},
	}
}

func newProviderForm() providerForm {
	f := providerForm{New: true, SlotMinutes: "30", Policy: policyFields(services.BookingPolicy{})}
	for _, d := range formDays {
		f.Days = append(f.Days, dayField{Key: d.Key, Label: d.Label})
	}
	return f
}

// formOf shows p in a form, hours like "09:00-12:00, 13:00-17:00".
func formOf(p services.ProviderSchedule) providerForm {
	f := providerForm{
		ID:          p.ID,
		Name:        p.Name,
		SlotMinutes: strconv.Itoa(p.SlotMinutes),
		Closures:    strings.Join(p.Closures, ", "),
		Policy:      policyFields(p.Policy),
	}
	for _, d := range formDays {
		var periods []string
		for _, iv := range p.Hours[d.Key] {
			periods = append(periods, iv.Start+"-"+iv.End)
		}
		f.Days = append(f.Days, dayField{Key: d.Key, Label: d.Label, Value: strings.Join(periods, ", ")})
	}
	return f
}

// providerFormFrom reads the submitted form as typed.
func providerFormFrom(ctx echo.Context) providerForm {
	f := providerForm{
		ID:          strings.TrimSpace(ctx.FormValue("id")),
		Name:        strings.TrimSpace(ctx.FormValue("name")),
		SlotMinutes: strings.TrimSpace(ctx.FormValue("slot_minutes")),
		Closures:    strings.TrimSpace(ctx.FormValue("closures")),
	}
	for _, d := range formDays {
		f.Days = append(f.Days, dayField{Key: d.Key, Label: d.Label, Value: strings.TrimSpace(ctx.FormValue(d.Key))})
	}
	f.Policy = policyFields(services.BookingPolicy{})
	for i := range f.Policy {
		f.Policy[i].Value = strings.TrimSpace(ctx.FormValue(f.Policy[i].Key))
	}
	return f
}

// schedule parses the form. Errors name the form's fields ("slot_minutes",
// "hours.mon"); the schedule itself is validated when it is stored.
func (f providerForm) schedule() (services.ProviderSchedule, error) {
	fe := services.FieldErrors{}
	p := services.ProviderSchedule{
		Provider: services.Provider{ID: f.ID, Name: f.Name},
		Hours:    map[string][]services.Interval{},
		Closures: splitList(f.Closures),
	}
	n, err := strconv.Atoi(f.SlotMinutes)
	if err != nil {
		fe.Add("slot_minutes", "slot_minutes must be a whole number of minutes")
	}
	p.SlotMinutes = n
	for _, pf := range f.Policy {
		v := 0
		if pf.Value != "" {
			if v, err = strconv.Atoi(pf.Value); err != nil {
				fe.Add("policy."+pf.Key, pf.Key+" must be a whole number, or empty for no limit")
				continue
			}
		}
		pf.set(&p.Policy, v)
	}
	for _, d := range f.Days {
		for _, period := range splitList(d.Value) {
			start, end, ok := strings.Cut(period, "-")
			if !ok {
				fe.Add("hours."+d.Key, fmt.Sprintf("%q is not a period like 09:00-12:00", period))
				continue
			}
			iv := services.Interval{Start: strings.TrimSpace(start), End: strings.TrimSpace(end)}
			p.Hours[d.Key] = append(p.Hours[d.Key], iv)
		}
	}
	if err := fe.Err(); err != nil {
		return services.ProviderSchedule{}, err
	}
	return p, nil
}

// splitList splits "a, b,c" into its non-empty, trimmed items.
func splitList(s string) []string {
	out := []string{}
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

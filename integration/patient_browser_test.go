package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/services"
)

// TestBrowser_Patient walks a patient's whole visit in a real browser, with
// the keyboard alone: pick a time, fail the form once, send it, watch the
// status page turn booked when the front desk confirms (without a reload),
// look at other times, and cancel. axe-core checks every page on the way.
func TestBrowser_Patient(t *testing.T) {
	env := NewEnv(t)
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	firstSlot(t, web, "maple") // the agent has published
	b := NewBrowser(t, env.Relay.HTTPURL())

	b.Open("/")
	b.Axe("home")
	b.Shot("home")

	// A day after today: today's first free time may start within the
	// test, and a started appointment can no longer be cancelled.
	b.Open("/c/maple?date=" + laterDay(t, web, "maple"))
	b.Axe("clinic")
	b.Shot("clinic")

	// Keyboard only from here: Tab to the first free time, Enter.
	b.TabTo(`el.classList.contains("slot")`)
	b.Press(kb.Enter, `location.pathname === "/c/maple/request"`)
	b.Axe("request form")
	b.Shot("request")

	// Sent empty: every field at fault is named, and the page passes axe.
	b.TabTo(`el.type === "submit"`)
	b.Press(kb.Enter, `document.querySelectorAll(".field-error").length >= 5`)
	b.Axe("request form with errors")
	b.Shot("request-errors")

	for _, f := range []struct{ id, text string }{
		{"name", "Ada Keyboard"}, {"birth_date", "04021980"}, {"phone", "+1 416 555 0100"},
		{"email", "ada@example.org"}, {"reason", "Sore knee"},
	} {
		b.TabTo(`el.id === "` + f.id + `"`)
		b.Type(f.text)
	}
	if got := b.Eval(`document.getElementById("birth_date").value`); got != "1980-04-02" {
		t.Fatalf("date of birth typed as %q, want 1980-04-02", got)
	}
	b.Fill("consent", " ")
	b.TabTo(`el.type === "submit"`)
	b.Press(kb.Enter, `location.pathname.startsWith("/r/maple_")`)
	token := strings.TrimPrefix(b.Path(), "/r/")

	// The status page follows the request live: delivered, then booked
	// when the front desk confirms, in the same page (the marker survives).
	b.AwaitJS(`document.getElementById("state").className.includes("state-delivered")`, 10*time.Second)
	b.Axe("status (delivered)")
	b.Shot("status-delivered")
	b.Do(chromedp.Evaluate[chromedp.Void](`window.stillHere = true`))
	entries := awaitPending(t, ag, 1)
	if e := entries[0]; e.Name != "Ada Keyboard" || e.BirthDate != "1980-04-02" || e.Reason != "Sore knee" {
		t.Fatalf("the clinic got %+v", e)
	}
	start := time.Now()
	if code := ag.Desk(t).JSON("POST", "/api/requests/"+entries[0].ID+"/confirm", nil, nil); code != 200 {
		t.Fatalf("confirm: %d", code)
	}
	b.AwaitJS(`window.stillHere === true && document.getElementById("state").className.includes("state-booked")`, 10*time.Second)
	t.Logf("front desk confirms → the open status page says booked: %s", time.Since(start))
	b.Axe("status (booked)")
	b.Shot("status-booked")

	b.TabTo(`el.id === "reschedule"`)
	b.Press(kb.Enter, `location.pathname.endsWith("/reschedule")`)
	b.Axe("reschedule")
	b.Shot("reschedule")

	b.Open("/r/" + token)
	b.TabTo(`el.id === "cancel"`)
	b.Press(kb.Enter, `location.pathname.endsWith("/cancel")`)
	b.Axe("cancel")
	b.Shot("cancel")
	b.TabTo(`el.id === "confirm-cancel"`)
	b.Press(kb.Enter, `location.pathname === "/r/`+token+`" && document.getElementById("state").className.includes("state-cancelled")`)
	b.Axe("status (cancelled)")
	b.Shot("status-cancelled")
	awaitConsoleState(t, ag, entries[0].ID, "cancelled")
}

// TestBrowser_Pages checks the pages the walk does not reach: French, a
// phone's screen, and an error page.
func TestBrowser_Pages(t *testing.T) {
	env := NewEnv(t)
	env.MustStartAgent(env.MustAddClinic("birch"), nil, nil)
	firstSlot(t, newClient(t, env.Relay.HTTPURL()), "birch")
	b := NewBrowser(t, env.Relay.HTTPURL())

	b.Open("/c/birch?lang=fr")
	if got := b.Eval(`document.documentElement.lang`); got != "fr" {
		t.Errorf("html lang = %q after ?lang=fr", got)
	}
	b.Axe("clinic (fr)")
	b.Shot("clinic-fr")
	b.Open("/?lang=en")

	b.Do(chromedp.EmulateViewport(390, 844))
	b.Open("/c/birch")
	b.Axe("clinic (phone)")
	if w := b.Eval(`String(document.documentElement.scrollWidth)`); w != "390" {
		t.Errorf("the clinic page is %spx wide on a 390px phone: it scrolls sideways", w)
	}
	b.Shot("clinic-phone")

	b.Open("/c/no-such-clinic")
	b.Axe("not found")

	// A patient in Tokyo sees their own time beside the clinic's; one in
	// the clinic's zone sees the clinic's alone.
	for _, tc := range []struct {
		zone string
		mine bool
	}{{"Asia/Tokyo", true}, {"America/Toronto", false}} {
		if _, err := chromedp.Call(b.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: tc.zone}); err != nil {
			t.Fatal(err)
		}
		b.Open("/c/birch")
		got := b.Eval(`(() => { const el = document.querySelector("time[datetime][data-zone]");
			const mine = el.parentNode.querySelector(".your-time");
			return el.getAttribute("datetime") + "|" + (mine ? mine.textContent : ""); })()`)
		at, mine, _ := strings.Cut(got, "|")
		start, err := time.Parse(time.RFC3339, at)
		if err != nil {
			t.Fatalf("datetime %q: %v", at, err)
		}
		tokyo, _ := time.LoadLocation(tc.zone)
		if want := start.In(tokyo).Format("15:04"); tc.mine != strings.Contains(mine, want) || !tc.mine && mine != "" {
			t.Errorf("browser in %s: slot at %s shows %q beside it, want your time %s: %v", tc.zone, at, mine, want, tc.mine)
		}
	}
}

func awaitPending(t *testing.T, ag *Agent, n int) []console.Entry {
	t.Helper()
	var es []console.Entry
	poll.For(t, 10*time.Second, func() error {
		var err error
		if es, err = ag.Console.Requests(context.Background(), console.StatusPending); err == nil && len(es) != n {
			err = fmt.Errorf("%d pending, want %d", len(es), n)
		}
		return err
	})
	return es
}

func awaitConsoleState(t *testing.T, ag *Agent, id, status string) {
	t.Helper()
	poll.For(t, 10*time.Second, func() error {
		es, err := ag.Console.Requests(context.Background(), status)
		for _, e := range es {
			if e.ID == id {
				return nil
			}
		}
		return fmt.Errorf("request %s not %s at the console (%v)", id, status, err)
	})
}

// laterDay is the first date after today (in the clinic's zone, Toronto)
// with a free time.
func laterDay(t *testing.T, web *Client, clinic string) string {
	t.Helper()
	loc, _ := time.LoadLocation("America/Toronto")
	today := services.Today(time.Now(), loc).Format(time.DateOnly)
	var got slotsResp
	web.JSON("GET", "/api/v1/clinics/"+clinic+"/slots", nil, &got)
	for _, s := range got.Slots {
		if d := services.Date(s.Start, loc); d > today {
			return d
		}
	}
	t.Fatalf("no free time after today at %s", clinic)
	return ""
}

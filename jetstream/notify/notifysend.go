package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// FailedNotice is a notice given up on, kept on notify.failed.<clinic> for
// operators: IDs, the attempts and what went wrong, never the address.
type FailedNotice struct {
	Notice   services.Notice `json:"notice"`
	Channel  string          `json:"channel,omitempty"`
	Attempts int             `json:"attempts"`
	Error    string          `json:"error"`
	At       time.Time       `json:"at"`
}

// errSkip: the notice is not due any more (the request moved on, or its
// contact is gone); it is acked, not sent.
var errSkip = errors.New("notice no longer due")

// send sends one notice by channel ch: acked only once the provider has
// accepted it, tried again later on a failure, and given up after the last
// attempt.
func (n *Notifier) send(ch Channel, m jetstream.Msg) {
	var no services.Notice
	if err := json.Unmarshal(m.Data(), &no); err != nil || subjects.ValidRequestID(no.RequestID) != nil {
		n.log.Error("notice unreadable; dropped", "subject", m.Subject())
		m.Term()
		return
	}
	attempt := 1
	if md, err := m.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	log := n.log.With("clinic_id", no.ClinicID, "request_id", no.RequestID, "kind", no.Kind, "attempt", attempt,
		"channel", ch.Name())
	stop := n.holdOn(m)
	err := n.deliver(ctx, ch, no)
	stop()
	switch {
	case errors.Is(err, errSkip):
		n.Metrics.Skipped.Add(1)
		log.Info("notice not due any more; not sent")
		m.Ack()
	case err == nil:
		n.Metrics.Sent.Add(1)
		log.Info("notice sent")
		if err := m.DoubleAck(ctx); err != nil {
			log.Warn("notice sent but its ack was lost: it may be sent again (same Message-ID)", "err", err.Error())
		}
	case ch.Permanent(err) || attempt > len(n.cfg.Retries):
		n.giveUp(ctx, ch, no, attempt, err)
		m.Term()
	default:
		n.Metrics.Retried.Add(1)
		wait := n.cfg.Retries[attempt-1]
		log.Warn("notice not sent; will try again", "err", ch.Describe(err), "retry_in", wait)
		m.NakWithDelay(wait)
	}
}

// holdOn tells the server the notice is in hand, now (it may have waited
// behind another) and every third of the ack wait until stop is called,
// so that it is not offered again while this relay still has it.
func (n *Notifier) holdOn(m jetstream.Msg) (stop func()) {
	m.InProgress()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(n.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				m.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// deliver reads the request's status and contact as they are now, and
// sends the notice by ch if it is still due (services.Notice.Due).
func (n *Notifier) deliver(ctx context.Context, ch Channel, no services.Notice) error {
	var st services.Status
	if _, err := cjs.GetJSON(ctx, n.status, subjects.StatusKey(no.ClinicID, no.RequestID), &st); err != nil {
		if errors.Is(err, cjs.ErrNotFound) {
			return errSkip
		}
		return err
	}
	if !no.Due(st) {
		// The request moved on since (a cancellation put back, a new time,
		// a reminder's booking cancelled): the notice would tell a falsehood.
		return errSkip
	}
	c, err := n.cfg.Contacts.Contact(ctx, no.ClinicID, no.RequestID)
	if errors.Is(err, cjs.ErrNotFound) {
		return errSkip
	}
	if err != nil {
		return err
	}
	out, err := n.outgoing(no, st, c)
	if err != nil {
		return err
	}
	if err := ch.Send(ctx, out); err != nil {
		return err
	}
	if no.Kind == services.NoticeDeclined || no.Kind == services.NoticeCancelled {
		n.toldLast(ctx, ch, c, st)
	}
	return nil
}

// toldLast notes that ch has sent the request's last notice; once every
// channel that reaches the patient has, nothing more will be said about the
// request, and the contact is forgotten.
func (n *Notifier) toldLast(ctx context.Context, ch Channel, c services.Contact, st services.Status) {
	c.ToldLast = append(slices.DeleteFunc(slices.Clone(c.ToldLast), func(s string) bool { return s == ch.Name() }), ch.Name())
	done := true
	for _, o := range n.channels {
		if o.Reaches(c) && !slices.Contains(c.ToldLast, o.Name()) {
			done = false
		}
	}
	var err error
	if done {
		err = n.cfg.Contacts.Forget(ctx, c.ClinicID, c.RequestID)
	} else {
		err = n.keep(ctx, c, st)
	}
	if err != nil {
		n.log.Warn("contact not deleted; it expires on its own", "clinic_id", c.ClinicID,
			"request_id", c.RequestID, "err", err.Error())
	}
}

// outgoing is the notice with what any channel says of it: the clinic, and
// the times its slots name.
func (n *Notifier) outgoing(no services.Notice, st services.Status, c services.Contact) (Outgoing, error) {
	clinic, ok := n.cfg.Directory.Clinic(no.ClinicID)
	if !ok {
		clinic = services.Clinic{ID: no.ClinicID, Name: no.ClinicID, TimeZone: "UTC"}
	}
	slot := no.SlotID
	out := Outgoing{Notice: no, Contact: c, Clinic: clinic, BaseURL: n.cfg.BaseURL, Now: n.cfg.Now()}
	if no.Kind == services.NoticeProposed {
		slot = st.SlotID
		if _, p, err := services.ParseSlotID(no.SlotID); err == nil {
			out.Proposed = p
		}
	}
	var err error
	out.Start, out.End, err = n.slotTimes(clinic, slot, c)
	return out, err
}

// slotTimes finds the slot's end in the slot the patient asked for, or from
// the provider's other slots that day, or DefaultSlotLength.
func (n *Notifier) slotTimes(clinic services.Clinic, slot string, c services.Contact) (time.Time, time.Time, error) {
	_, start, err := services.ParseSlotID(slot)
	if err != nil {
		return start, start, err
	}
	day := services.Today(start, clinic.Location())
	known := n.cfg.Directory.Slots(clinic.ID, day, day.AddDate(0, 0, 1))
	if p, s, err := services.ParseSlotID(c.SlotID); err == nil && c.SlotEnd.After(s) {
		known = append(known, services.Slot{ID: c.SlotID, ProviderID: p, Start: s, End: c.SlotEnd})
	}
	return services.SlotTimes(slot, known)
}

// giveUp leaves the failure where people look: a record on
// notify.failed.<clinic>, an ERROR log line and the failed counter.
func (n *Notifier) giveUp(ctx context.Context, ch Channel, no services.Notice, attempts int, err error) {
	why := ch.Describe(err)
	n.log.Error("notice NOT sent: given up", "clinic_id", no.ClinicID, "request_id", no.RequestID, "kind", no.Kind,
		"channel", ch.Name(), "attempts", attempts, "err", why)
	b, _ := json.Marshal(FailedNotice{Notice: no, Channel: ch.Name(), Attempts: attempts, Error: why, At: n.cfg.Now().UTC()})
	if _, perr := n.cfg.JS.PublishMsg(ctx, &nats.Msg{Subject: subjects.NotifyFailed(no.ClinicID), Data: b}); perr != nil {
		n.log.Error("failed notice not recorded", "clinic_id", no.ClinicID, "request_id", no.RequestID, "err", perr.Error())
	}
	// Counted last, so whoever sees the counter move finds the record too.
	n.Metrics.Failed.Add(1)
}

// FailedNotices lists the notices given up on, oldest first.
func FailedNotices(ctx context.Context, js jetstream.JetStream) ([]FailedNotice, error) {
	s, err := js.Stream(ctx, subjects.StreamNotify)
	if err != nil {
		return nil, fmt.Errorf("failed notices: %w", err)
	}
	var out []FailedNotice
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subjects.AllNotifyFailed))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("failed notices: %w", err)
		}
		var f FailedNotice
		if json.Unmarshal(m.Data, &f) == nil {
			out = append(out, f)
		}
		seq = m.Sequence + 1
	}
}

// WriteMetrics writes the counters in Prometheus' text format.
func (n *Notifier) WriteMetrics(w io.Writer) {
	for _, c := range []struct {
		name, help string
		v          *atomic.Int64
	}{
		{"queued", "notices queued for sending", &n.Metrics.Queued},
		{"sent", "notices the mail server accepted", &n.Metrics.Sent},
		{"skipped", "notices no longer due when their turn came (not sent)", &n.Metrics.Skipped},
		{"retried", "failed attempts that will be tried again", &n.Metrics.Retried},
		{"failed", "notices given up on after their last attempt (not sent)", &n.Metrics.Failed},
		{"contact_errors", "contacts the relay could not keep (no notices for those requests)", &n.Metrics.ContactErrors},
	} {
		name := "clinicrelay_notify_" + c.name + "_total"
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, c.help, name, name, c.v.Load())
	}
}

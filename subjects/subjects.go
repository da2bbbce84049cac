// Package subjects names every subject, stream, consumer, bucket and key that
// clinicrelay uses, and validates the IDs that go into them. Nothing else
// formats a subject: a clinic ID reaches a subject only after ValidClinicID.
package subjects

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Streams and buckets.
const (
	// StreamRequests is the work queue of patient requests, one subject per clinic and kind.
	StreamRequests = "REQUESTS"
	// StreamAudit is the trail of every access to patient data: ids and
	// actors, never PHI; it refuses delete and purge.
	StreamAudit = "AUDIT"
	// AllAudit is "audit.>", what AUDIT stores.
	AllAudit = "audit.>"
	// BucketAvailability maps <clinic>.<YYYY-MM-DD> to that day's free slots.
	BucketAvailability = "AVAILABILITY"
	// BucketHolds maps <clinic>.<slot> to a short-lived exclusive hold.
	BucketHolds = "HOLDS"
	// BucketStatus maps <clinic>.<request> to the request's outcome, without PHI.
	BucketStatus = "STATUS"
	// BucketClinics maps <clinic> to its public profile and <clinic>.<suffix> to keys the agent owns.
	BucketClinics = "CLINICS"
	// BucketPending maps <clinic>.<hash> to the requests not yet final of
	// one patient's email or phone (hash: the relay's keyed HMAC of it).
	BucketPending = "PENDING"
	// BucketContacts maps <clinic>.<request> to the patient's email address
	// and status link, encrypted by the relay, kept while notices are due.
	BucketContacts = "CONTACTS"
	// BucketPortal maps <clinic>.<hmac of email> to a patient's portal
	// account, sealed by the relay: no clear PHI.
	BucketPortal = "PORTAL"
	// BucketPortalTokens maps <clinic>.<hash> to the portal's short-lived
	// records, sealed by the relay, each with a TTL: a question to the
	// clinic (by its check ID), a set-password link and a session (by the
	// hash of their token).
	BucketPortalTokens = "PORTAL_TOKENS"
	// StreamNotify is the work queue of notices to send: IDs only, never PHI.
	StreamNotify = "NOTIFY"
	// AllNotify is "notify.>", what NOTIFY stores.
	AllNotify = "notify.>"
	// AllNotifyEmail is "notify.email.*": every clinic's email notices, the
	// filter of the sender's consumer (NotifySender).
	AllNotifyEmail = "notify.email.*"
	// NotifyFollower is the relay's durable consumer on KV_STATUS that turns
	// status changes into notices.
	NotifyFollower = "notify_status"
	// NotifySender is the relay's durable consumer on AllNotifyEmail.
	NotifySender = "notify_email"
	// StreamHealth holds the last write probe of each relay
	// (relay.health.<relay>): a relay is ready while it can write.
	StreamHealth = "RELAY_HEALTH"
	// AllHealth is "relay.health.*", what RELAY_HEALTH stores.
	AllHealth = "relay.health.*"
)

// Filters: the wildcard half of each subject pair.
const (
	// AllRequests is "clinic.*.>": every clinic's requests, the REQUESTS stream's subjects.
	AllRequests = "clinic.*.>"
)

// Keys the agent writes under its clinic in CLINICS.
const (
	// KeySeen is the agent's heartbeat: <clinic>.seen.
	KeySeen = "seen"
	// KeyProviders is the agent's published provider list: <clinic>.providers.
	KeyProviders = "providers"
	// KeySealKey is the clinic's public curve key, which requests are sealed
	// to: <clinic>.sealkey.
	KeySealKey = "sealkey"
)

var (
	clinicIDRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,39}$`)
	providerIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	tokenIDRE    = regexp.MustCompile(`^[a-f0-9]{32}$`)
	slotIDRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}_\d{8}T\d{4}Z$`)
	dateRE       = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

// ValidDate reports an error unless date is a calendar date YYYY-MM-DD.
func ValidDate(date string) error {
	if !dateRE.MatchString(date) {
		return fmt.Errorf("date %q must look like 2026-01-02", date)
	}
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		return fmt.Errorf("date %q is not a day of the calendar", date)
	}
	return nil
}

// ValidClinicID reports an error unless id is a clinic ID: ^[a-z0-9][a-z0-9-]{1,39}$.
// No dot, wildcard or space can pass, so a valid ID is always one subject token.
func ValidClinicID(id string) error {
	if !clinicIDRE.MatchString(id) {
		return fmt.Errorf("clinic id %q must be 2-40 lower-case letters, digits or dashes, starting with a letter or digit", id)
	}
	return nil
}

// ValidProviderID reports an error unless id is a provider ID: ^[a-z0-9][a-z0-9-]{0,39}$.
func ValidProviderID(id string) error {
	if !providerIDRE.MatchString(id) {
		return fmt.Errorf("provider id %q must be 1-40 lower-case letters, digits or dashes", id)
	}
	return nil
}

// ValidRequestID reports an error unless id is 32 lower-case hex digits (128 bits).
func ValidRequestID(id string) error {
	if !tokenIDRE.MatchString(id) {
		return fmt.Errorf("request id must be 32 hex digits")
	}
	return nil
}

// ValidSlotID reports an error unless id has the form <provider>_<YYYYMMDD>T<HHMM>Z.
func ValidSlotID(id string) error {
	if !slotIDRE.MatchString(id) {
		return fmt.Errorf("slot id %q must look like dr-lee_20260102T0930Z", id)
	}
	return nil
}

// Kinds of message on a clinic's queue, the last token of its subject
// (ClinicQueue). The agent has one entry per kind (agent/kinds.go).
const (
	KindRequests = "requests" // a patient's request
	KindChanges  = "changes"  // a patient's cancellation or new time
	KindIntake   = "intake"   // a patient's answers to an intake form
	KindPortal   = "portal"   // the portal asks: do your records hold this email?
)

// ClinicQueue is "clinic.<clinic>.<kind>": a clinic's messages of one kind.
func ClinicQueue(clinic, kind string) string { return "clinic." + clinic + "." + kind }

// KindOf is the kind of a ClinicQueue subject.
func KindOf(subject string) string { return subject[strings.LastIndexByte(subject, '.')+1:] }

// Requests is "clinic.<clinic>.requests": where the web front publishes a clinic's new requests.
func Requests(clinic string) string { return ClinicQueue(clinic, KindRequests) }

// Changes is "clinic.<clinic>.changes": where the web front publishes a
// patient's cancellations and reschedules of a clinic's requests.
func Changes(clinic string) string { return ClinicQueue(clinic, KindChanges) }

// ClinicFilter is "clinic.<clinic>.>": everything REQUESTS holds for one clinic
// (requests now; cancellations and intake later), the filter of its consumer.
func ClinicFilter(clinic string) string { return "clinic." + clinic + ".>" }

// AgentConsumer is "agent_<clinic>": the durable pull consumer the relay makes
// when the clinic's agent asks (AgentConsumerRequest).
func AgentConsumer(clinic string) string { return "agent_" + clinic }

// AgentConsumerRequest is "relay.agents.<clinic>.consumer": an agent asks the
// relay here to make (or mend) its consumer; AllAgentConsumerRequests is
// what the relay listens on.
func AgentConsumerRequest(clinic string) string { return "relay.agents." + clinic + ".consumer" }

// AllAgentConsumerRequests is "relay.agents.*.consumer".
const AllAgentConsumerRequests = "relay.agents.*.consumer"

// AgentWrite is "relay.agents.<clinic>.kv.<bucket>.<suffix>": an agent asks
// the relay here to write (or delete) its key <clinic>.<suffix> of bucket.
// Agents never publish to a KV subject themselves: a publish can carry
// headers (Nats-Rollup: all purges a whole stream) and any number of keys,
// which subject permissions cannot restrict; the relay checks the key, the
// value and the operation, then writes with headers of its own.
func AgentWrite(clinic, bucket, suffix string) string {
	return "relay.agents." + clinic + ".kv." + bucket + "." + suffix
}

// AllAgentWrites is "relay.agents.*.kv.*.*", what the relay listens on.
const AllAgentWrites = "relay.agents.*.kv.*.*"

// AgentAudit is "relay.agents.<clinic>.audit": an agent's audit event, which
// the relay checks and records in AUDIT.
func AgentAudit(clinic string) string { return "relay.agents." + clinic + ".audit" }

// AllAgentAudits is "relay.agents.*.audit".
const AllAgentAudits = "relay.agents.*.audit"

// AgentPortalAnswer is "relay.agents.<clinic>.portal": an agent answers
// the portal's checks (KindPortal) here, yes or no; the relay acts on an
// answer only to a check it asked, so an agent makes no key by answering.
func AgentPortalAnswer(clinic string) string { return "relay.agents." + clinic + ".portal" }

// AllAgentPortalAnswers is "relay.agents.*.portal".
const AllAgentPortalAnswers = "relay.agents.*.portal"

// AgentPortalGrant is "relay.agents.<clinic>.portal-grant": an agent gives a
// patient portal access with a temporary password (its argon2id hash only;
// the front desk hands the password to the patient).
func AgentPortalGrant(clinic string) string { return "relay.agents." + clinic + ".portal-grant" }

// AllAgentPortalGrants is "relay.agents.*.portal-grant".
const AllAgentPortalGrants = "relay.agents.*.portal-grant"

// PortalCheck is "clinic.<clinic>.portal": where the web front asks a
// clinic about an email.
func PortalCheck(clinic string) string { return ClinicQueue(clinic, KindPortal) }

// PortalKey is "<clinic>.<hash>" in PORTAL and PORTAL_TOKENS; hash is hex,
// never an address or a token itself.
func PortalKey(clinic, hash string) string { return clinic + "." + hash }

// AgentKeys is "relay.agents.<clinic>.keys": an agent asks the relay which of
// its keys AVAILABILITY and CLINICS hold, to put back any that vanished (a
// purge, a restored backup, a new bucket).
func AgentKeys(clinic string) string { return "relay.agents." + clinic + ".keys" }

// AllAgentKeys is "relay.agents.*.keys".
const AllAgentKeys = "relay.agents.*.keys"

// Headers of an AgentWrite request: the operation and, for a
// compare-and-set, the revision the key must still have.
const (
	HeaderOp       = "Clinicrelay-Op" // put, update or delete
	HeaderRevision = "Clinicrelay-Revision"
)

// AgentInboxPrefix is "_INBOX_<clinic>": the inbox prefix an agent must use, so
// that its replies cannot be read by any other clinic.
func AgentInboxPrefix(clinic string) string { return "_INBOX_" + clinic }

// AvailabilityKey is "<clinic>.<YYYY-MM-DD>" in AVAILABILITY.
func AvailabilityKey(clinic, date string) string { return clinic + "." + date }

// HoldKey is "<clinic>.<slot>" in HOLDS.
func HoldKey(clinic, slot string) string { return clinic + "." + slot }

// PendingKey is "<clinic>.<hash>" in PENDING; hash is hex, never the
// address itself.
func PendingKey(clinic, hash string) string { return clinic + "." + hash }

// StatusKey is "<clinic>.<request>" in STATUS.
func StatusKey(clinic, request string) string { return clinic + "." + request }

// ClinicKey is "<clinic>" in CLINICS: the public profile the relay writes.
func ClinicKey(clinic string) string { return clinic }

// IsClinicKey reports whether a CLINICS key is a profile ("<clinic>"), not
// one of the agent's keys ("<clinic>.<suffix>").
func IsClinicKey(key string) bool { return !strings.Contains(key, ".") }

// ClinicSubKey is "<clinic>.<suffix>" in CLINICS: a key the agent writes (KeySeen, KeyProviders).
func ClinicSubKey(clinic, suffix string) string { return clinic + "." + suffix }

// KVKeyUnder is "<clinic>.*": every key one token under a clinic in any
// bucket, the filter that finds them all.
func KVKeyUnder(clinic string) string { return clinic + ".*" }

// KVSubject is "$KV.<bucket>.<key>": the subject a KV key is stored under.
func KVSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// KVStream is "KV_<bucket>": the stream behind a KV bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// Headers of a REQUESTS message: routing IDs only, never PHI.
const (
	HeaderRequestID = "Clinicrelay-Request"
	HeaderClinicID  = "Clinicrelay-Clinic"
	HeaderSlotID    = "Clinicrelay-Slot"
	// The revision of the request's hold, so the agent releases it without
	// reading it first.
	HeaderHoldRevision = "Clinicrelay-Hold-Revision"
	// The sealed body's recipient (the clinic's public curve key) and its
	// one-time sender key.
	HeaderSealedTo   = "Clinicrelay-Sealed-To"
	HeaderSealedFrom = "Clinicrelay-Sealed-From"
)

// Channels a notice goes by: the second token of its subject (Notify). The
// names "remind" and "failed" are taken (NotifyReminder, NotifyFailed).
const (
	ChannelEmail = "email"
)

// Notify is "notify.<channel>.<clinic>": a notice to send by channel.
func Notify(channel, clinic string) string { return "notify." + channel + "." + clinic }

// AllNotifyOn is "notify.<channel>.*": every clinic's notices by channel, the
// filter of the channel's sender (NotifySenderOn).
func AllNotifyOn(channel string) string { return "notify." + channel + ".*" }

// NotifySenderOn is "notify_<channel>", the relay's durable consumer on
// AllNotifyOn(channel).
func NotifySenderOn(channel string) string { return "notify_" + channel }

// NotifyEmail is "notify.email.<clinic>": an email notice to send.
func NotifyEmail(clinic string) string { return Notify(ChannelEmail, clinic) }

// NotifyReminder is "notify.remind.<clinic>.<request>": the schedule of a
// request's reminder, one per request (a new one replaces it); when it fires
// the server publishes the notice to NotifyEmail.
func NotifyReminder(clinic, request string) string { return "notify.remind." + clinic + "." + request }

// NotifyFailed is "notify.failed.<clinic>": a notice given up on after its
// last attempt, kept for operators (relay notices --failed).
func NotifyFailed(clinic string) string { return "notify.failed." + clinic }

// AllNotifyFailed is "notify.failed.*".
const AllNotifyFailed = "notify.failed.*"

// ContactKey is "<clinic>.<request>" in CONTACTS.
func ContactKey(clinic, request string) string { return clinic + "." + request }

// Headers of a NOTIFY message: IDs only.
const (
	HeaderNoticeKind = "Clinicrelay-Notice"
)

// Audit is "audit.<clinic>.<action>": where an access to a clinic's patient
// data is recorded ("_relay" for the relay's own, such as operator creds).
func Audit(clinic, action string) string { return "audit." + clinic + "." + action }

// AuditFilter is "audit.<clinic>.>": one clinic's trail.
func AuditFilter(clinic string) string { return "audit." + clinic + ".>" }

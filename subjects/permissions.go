package subjects

// TagClinic is the user-JWT tag key that names an agent's clinic: "clinic:<id>".
// The agent signing key's template expands {{tag(clinic)}} from it.
const TagClinic = "clinic"

// AgentTemplate is the placeholder the agent permission template uses for the clinic ID.
const AgentTemplate = "{{tag(" + TagClinic + ")}}"

// WebInboxPrefix is the inbox prefix the web front connects with. It has an
// underscore after "_INBOX_", which no clinic ID can, so no agent's
// "_INBOX_<clinic>.>" grant reaches it (a clinic may be called "web").
const WebInboxPrefix = "_INBOX_web_front"

// Permissions is a publish/subscribe allow list, the shape shared by the auth
// code that signs it and the tests that check it.
type Permissions struct {
	PubAllow []string
	SubAllow []string
}

// AgentPermissions is the least-privilege list of the agent of clinic. With
// AgentTemplate as clinic it is the template the agent signing key carries;
// nats-server expands it per user from the user's clinic tag.
//
// Never listed, on purpose: "$JS.>", the bare "$JS.API.DIRECT.GET.<stream>"
// (its JSON body reads any key, nats-server#5203), "$JS.API.STREAM.MSG.GET.*",
// any CONSUMER.CREATE (filter_subjects cannot be restricted, #6180, and even
// the filtered create lets the agent pick a deliver_subject, #8274),
// "_INBOX.>", "$JS.API.STREAM.INFO.<stream>", whose subjects_filter
// lists every key of a bucket (the agent uses keys through their subjects),
// and any subject a stream stores ($KV.>, audit.>): headers such as
// Nats-Rollup act on the whole stream, whatever the subject.
func AgentPermissions(clinic string) Permissions {
	c := AgentConsumer(clinic)
	pub := []string{
		// The relay makes the consumer, with a config the agent cannot choose.
		AgentConsumerRequest(clinic),
		"$JS.API.CONSUMER.INFO." + StreamRequests + "." + c,
		"$JS.API.CONSUMER.MSG.NEXT." + StreamRequests + "." + c,
		"$JS.ACK." + StreamRequests + "." + c + ".>",
		"$JS.ACK.*.*." + StreamRequests + "." + c + ".>",
	}
	// Writes go through the relay (AgentWrite), which checks the key, the
	// value and the operation: a direct publish to $KV could carry any
	// header and make any number of keys.
	pub = append(pub, AgentWrite(clinic, "*", "*"), AgentAudit(clinic), AgentKeys(clinic), AgentPortalAnswer(clinic),
		AgentPortalGrant(clinic))
	for _, b := range []string{BucketAvailability, BucketStatus, BucketClinics, BucketHolds} {
		// Reads of its own keys, one token under the clinic.
		pub = append(pub, "$JS.API.DIRECT.GET."+KVStream(b)+"."+KVSubject(b, clinic)+".*")
	}
	// The agent reads, but never writes, its own public profile.
	pub = append(pub, "$JS.API.DIRECT.GET."+KVStream(BucketClinics)+"."+KVSubject(BucketClinics, ClinicKey(clinic)))
	return Permissions{PubAllow: pub, SubAllow: []string{AgentInboxPrefix(clinic) + ".>"}}
}

// WebPermissions is the web front's list: publish requests, changes and
// portal checks, hold slots, read and write statuses and portal records, and watch the buckets it serves from memory
// (CLINICS, AVAILABILITY, HOLDS) and STATUS (for live status pages), nothing
// more.
func WebPermissions() Permissions {
	pub := []string{Requests("*"), Changes("*"), PortalCheck("*"), "$JS.FC.>", AllAudit}
	for _, b := range []string{BucketAvailability, BucketHolds, BucketClinics, BucketStatus} { // watched
		pub = append(pub, "$JS.API.STREAM.INFO."+KVStream(b),
			"$JS.API.CONSUMER.CREATE."+KVStream(b)+".>", "$JS.API.CONSUMER.DELETE."+KVStream(b)+".>")
	}
	for _, b := range []string{BucketHolds, BucketStatus, BucketPending, BucketPortal, BucketPortalTokens} { // read and written by key
		pub = append(pub, KVSubject(b, ">"), "$JS.API.DIRECT.GET."+KVStream(b)+"."+KVSubject(b, ">"))
	}
	return Permissions{PubAllow: pub, SubAllow: []string{WebInboxPrefix + ".>"}}
}

// Limits of each agent's connection, in its permission template: how many
// subscriptions, and the largest message (a day of AVAILABILITY,
// jetstream.MaxDayBytes, with its headers; the agent refuses a larger value
// itself, as the server would close its connection).
const (
	AgentMaxSubs    = 100
	AgentMaxPayload = 264 << 10
)

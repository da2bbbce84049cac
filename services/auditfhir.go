package services

// FHIR renders ev as a FHIR R4 AuditEvent resource (`relay audit --format
// fhir`): type "rest", the action's code in subtype, who did it in agent,
// the request as entity. No PHI: IDs, the actor and the client's IP.
func (ev AuditEvent) FHIR() map[string]any {
	action := "R"
	switch ev.Action {
	case AuditRequestCreated, AuditCredsIssued:
		action = "C"
	case AuditOutcomeSet, AuditClinicRevoked, AuditRequestDecided:
		action = "U"
	case AuditClinicPurged:
		action = "D"
	}
	who := ev.Actor
	if ev.User != "" {
		who = ev.Actor + " " + ev.User // e.g. "staff ana", as the clinic's agent named them
	}
	agent := map[string]any{"requestor": ev.Actor != "relay", "who": map[string]any{"display": who}}
	if ev.IP != "" {
		agent["network"] = map[string]any{"address": ev.IP, "type": "2"}
	}
	r := map[string]any{
		"resourceType": "AuditEvent",
		"type":         map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
		"subtype":      []any{map[string]any{"system": "https://clinicrelay.example/audit-action", "code": ev.Action}},
		"action":       action,
		"recorded":     ev.At.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"outcome":      "0",
		"agent":        []any{agent},
		"source":       map[string]any{"observer": map[string]any{"display": "clinicrelay " + ev.Clinic}},
	}
	if ev.RequestID != "" {
		r["entity"] = []any{map[string]any{"what": map[string]any{"identifier": map[string]any{
			"system": "https://clinicrelay.example/request", "value": ev.RequestID}}}}
	}
	return r
}

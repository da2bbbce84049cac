package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// maxSlotRange is the widest from..to the slots API answers.
const maxSlotRange = 60

type apiClinic struct {
	ID         string              `json:"id"`
	Name       string              `json:"name"`
	TimeZone   string              `json:"timezone"`
	Providers  []services.Provider `json:"providers"`
	LastSynced *time.Time          `json:"last_synced,omitempty"`
	URL        string              `json:"url"`
}

type apiSlot struct {
	ID           string    `json:"id"`
	ProviderID   string    `json:"provider_id"`
	ProviderName string    `json:"provider_name"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end,omitzero"`
	Local        string    `json:"local"`
}

type apiRequest struct {
	SlotID    string `json:"slot_id"`
	Name      string `json:"name"`
	BirthDate string `json:"birth_date"`
	Phone     string `json:"phone"`
	Email     string `json:"email"`
	Reason    string `json:"reason"`
	// Consent defaults to true for API clients, which confirm by calling that
	// the patient agreed; an explicit false is refused.
	Consent *bool `json:"consent"`
	// NewPatient: never been to the clinic (true) or has (false); null
	// when not said.
	NewPatient *bool `json:"new_patient"`
	// EmailCode is the code emailed to the patient when the clinic asked
	// for one (web/emailcode.go); empty otherwise.
	EmailCode string `json:"email_code,omitempty"`
	// Website is a honeypot (web/honeypot.go): honest clients leave it
	// out; a request that fills it is answered as accepted and dropped.
	Website string `json:"website,omitempty"`
}

type apiStatus struct {
	ID           string         `json:"id"`
	Clinic       string         `json:"clinic"`
	ClinicName   string         `json:"clinic_name"`
	State        services.State `json:"state"`
	Slot         apiSlot        `json:"slot"`
	Reason       string         `json:"reason,omitempty"`
	ProposedSlot *apiSlot       `json:"proposed_slot,omitempty"`
	UpdatedAt    time.Time      `json:"updated_at"`
}

func (s *Server) clinicView(c services.Clinic) apiClinic {
	v := apiClinic{ID: c.ID, Name: c.Name, TimeZone: c.TimeZone, Providers: s.cfg.Catalog.Providers(c.ID), URL: "/c/" + c.ID}
	if v.Providers == nil {
		v.Providers = []services.Provider{}
	}
	if hb := s.cfg.Catalog.LastSeen(c.ID); !hb.At.IsZero() {
		v.LastSynced = &hb.At
	}
	return v
}

func (s *Server) slotView(c services.Clinic, sl services.Slot) apiSlot {
	return s.slotViews(c, []services.Slot{sl})[0]
}

// slotViews renders slots of clinic c, resolving its zone and provider
// names once for the whole list.
func (s *Server) slotViews(c services.Clinic, slots []services.Slot) []apiSlot {
	loc := c.Location()
	names := map[string]string{}
	for _, p := range s.cfg.Catalog.Providers(c.ID) {
		names[p.ID] = p.Name
	}
	out := make([]apiSlot, len(slots))
	for i, sl := range slots {
		name, ok := names[sl.ProviderID]
		if !ok {
			name = sl.ProviderID
		}
		out[i] = apiSlot{ID: sl.ID, ProviderID: sl.ProviderID, ProviderName: name, Start: sl.Start, End: sl.End,
			Local: sl.Start.In(loc).Format("Mon 2 Jan 2006 15:04 MST")}
	}
	return out
}

func (s *Server) nextFree(slug string) []apiSlot {
	c, ok := s.cfg.Catalog.Clinic(slug)
	if !ok {
		return nil
	}
	return s.slotViews(c, s.cfg.Catalog.NextFree(slug, 5))
}

// clinic finds an active clinic by the :slug parameter.
func (s *Server) clinic(c echo.Context) (services.Clinic, error) {
	cl, ok := s.cfg.Catalog.Clinic(c.Param("slug"))
	if !ok || cl.Revoked {
		return cl, services.Keyed(services.ENotFound, "error.no_clinic", "no such clinic")
	}
	return cl, nil
}

func (s *Server) handleAPIClinicList(c echo.Context) error {
	out := []apiClinic{}
	for _, cl := range s.cfg.Catalog.Clinics() {
		out = append(out, s.clinicView(cl))
	}
	return c.JSON(http.StatusOK, out)
}

// slotRange parses from/to (clinic-local dates); from defaults to today, to to from+6.
func (s *Server) slotRange(c echo.Context, cl services.Clinic) (time.Time, time.Time, error) {
	today := services.Today(s.cfg.Now(), cl.Location())
	from, to := today, today.AddDate(0, 0, 6)
	var err error
	if v := c.QueryParam("from"); v != "" {
		if from, err = services.ParseDate("from", v); err != nil {
			return from, to, err
		}
		to = from.AddDate(0, 0, 6)
	}
	if v := c.QueryParam("to"); v != "" {
		if to, err = services.ParseDate("to", v); err != nil {
			return from, to, err
		}
	}
	if to.Before(from) {
		return from, to, &services.Error{Code: services.EInvalid, Message: "to must not be before from",
			Fields: map[string]string{"to": "must not be before from"}}
	}
	if to.Sub(from) > maxSlotRange*24*time.Hour {
		return from, to, &services.Error{Code: services.EInvalid, Message: "at most 60 days at a time",
			Fields: map[string]string{"to": "must be at most 60 days after from"}}
	}
	return from, to, nil
}

func (s *Server) handleAPISlotList(c echo.Context) error {
	cl, err := s.clinic(c)
	if err != nil {
		return err
	}
	from, to, err := s.slotRange(c, cl)
	if err != nil {
		return err
	}
	// The version is read before the slots: a change that lands in between
	// makes the cached answer stale at once rather than hide it.
	key, version, now := cl.ID+"/"+from.Format(time.DateOnly)+"/"+to.Format(time.DateOnly), s.cfg.Catalog.Version(cl.ID), s.cfg.Now()
	if body, ok := s.slots.get(key, version, now); ok {
		return c.JSONBlob(http.StatusOK, body)
	}
	out := s.slotViews(cl, s.cfg.Catalog.Slots(cl.ID, from, to))
	body, err := json.Marshal(apiSlotList{Clinic: cl.ID, TimeZone: cl.TimeZone, From: from.Format(time.DateOnly),
		To: to.Format(time.DateOnly), Slots: out})
	if err != nil {
		return err
	}
	s.slots.put(key, version, now, body)
	return c.JSONBlob(http.StatusOK, body)
}

// apiSlotList is the slots API's answer.
type apiSlotList struct {
	Clinic   string    `json:"clinic"`
	TimeZone string    `json:"timezone"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Slots    []apiSlot `json:"slots"`
}

func (s *Server) handleAPIRequestCreate(c echo.Context) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	req, code, err := decodeAPIRequest(c.Request().Body)
	if err != nil {
		return err
	}
	req.Lang = lang(c) // for the email notices
	if err := s.checkEmailCode(c, c.Param("slug"), req, code); err != nil {
		return err
	}
	ptoken := s.portalRequest(c, c.Param("slug"), &req)
	booked, err := s.cfg.Booker.Request(c.Request().Context(), c.Param("slug"), req)
	if err != nil {
		return err
	}
	s.portalAdd(c, booked.Status.ClinicID, ptoken, req, booked)
	s.log.Info("request accepted", "clinic_id", booked.Status.ClinicID, "request_id", booked.Status.RequestID)
	s.audit(c, booked.Status.ClinicID, services.AuditRequestCreated, booked.Status.RequestID)
	return c.JSON(http.StatusCreated, map[string]string{
		"id":         booked.Status.RequestID,
		"token":      booked.Token,
		"status":     string(booked.Status.State),
		"status_url": "/r/" + booked.Token,
		"api_url":    "/api/v1/requests/" + booked.Token,
	})
}

// decodeAPIRequest reads the JSON body of POST /api/v1/clinics/:slug/requests
// and the email code it carries (the first JSON value; what follows it is ignored). Its errors are echo
// HTTP errors of status 400 or 413; the fields are checked later, by the Booker.
func decodeAPIRequest(body io.Reader) (req services.Request, emailCode string, err error) {
	var in apiRequest
	if err := decodeJSON(body, &in); err != nil {
		return services.Request{}, "", err
	}
	return services.Request{SlotID: in.SlotID, Name: in.Name, BirthDate: in.BirthDate, Phone: in.Phone,
			Email: in.Email, Reason: in.Reason, Consent: in.Consent == nil || *in.Consent, NewPatient: in.NewPatient},
		strings.TrimSpace(in.EmailCode), nil
}

// requireJSON refuses a body that is not declared JSON, with 415.
func requireJSON(c echo.Context) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	return nil
}

// decodeJSON reads the first JSON value of an API body into v (what follows
// it is ignored). Its errors are echo HTTP errors of status 400 or 413.
func decodeJSON(body io.Reader, v any) error {
	// Read it all first: decoding straight from the body can complete a
	// value from the very read that crossed the body limit.
	b, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		return echo.NewHTTPError(http.StatusBadRequest, "request body could not be read")
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return echo.NewHTTPError(http.StatusBadRequest, "request body is empty")
		}
		return echo.NewHTTPError(http.StatusBadRequest, "request body is not valid JSON")
	}
	return nil
}

func (s *Server) statusView(st services.Status) apiStatus {
	cl, _ := s.cfg.Catalog.Clinic(st.ClinicID)
	v := apiStatus{ID: st.RequestID, Clinic: st.ClinicID, ClinicName: cl.Name, State: st.State, Reason: st.Reason,
		UpdatedAt: st.UpdatedAt}
	if p, start, err := services.ParseSlotID(st.SlotID); err == nil {
		v.Slot = s.slotView(cl, services.Slot{ID: st.SlotID, ProviderID: p, Start: start})
	}
	if p, start, err := services.ParseSlotID(st.ProposedSlot); err == nil {
		ps := s.slotView(cl, services.Slot{ID: st.ProposedSlot, ProviderID: p, Start: start})
		v.ProposedSlot = &ps
	}
	return v
}

func (s *Server) handleAPIRequestGet(c echo.Context) error {
	st, err := s.cfg.Booker.Status(c.Request().Context(), c.Param("token"))
	if err != nil {
		return err
	}
	s.audit(c, st.ClinicID, services.AuditStatusViewed, st.RequestID)
	return c.JSON(http.StatusOK, s.statusView(st))
}

package web

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// handleAppointmentICS serves a booked request's calendar file (RFC 5545,
// in the clinic's zone): the clinic's name and the time, no reason. It is
// 404 unless the request is booked, like an unknown token.
func (s *Server) handleAppointmentICS(c echo.Context) error {
	token := c.Param("token")
	st, err := s.cfg.Booker.Status(c.Request().Context(), token)
	if err != nil {
		return err
	}
	if st.State != services.StateBooked {
		return services.Errorf(services.ENotFound, "no booked appointment for this request")
	}
	s.audit(c, st.ClinicID, services.AuditStatusViewed, st.RequestID)
	clinic, ok := s.cfg.Catalog.Clinic(st.ClinicID)
	if !ok {
		clinic = services.Clinic{ID: st.ClinicID, Name: st.ClinicID, TimeZone: "UTC"}
	}
	_, start, err := services.ParseSlotID(st.SlotID)
	if err != nil {
		return err
	}
	// The booked slot has left the catalog; its provider's other slots that
	// day have its length.
	day := services.Today(start, clinic.Location())
	start, end, err := services.SlotTimes(st.SlotID, s.cfg.Catalog.Slots(clinic.ID, day, day.AddDate(0, 0, 1)))
	if err != nil {
		return err
	}
	a := services.Appointment{RequestID: st.RequestID, ClinicName: clinic.Name, Zone: clinic.Location(),
		Start: start, End: end, Link: c.Scheme() + "://" + c.Request().Host + "/r/" + token, Stamp: s.cfg.Now()}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", `attachment; filename="appointment.ics"`)
	return c.Blob(http.StatusOK, "text/calendar; charset=utf-8", a.ICS())
}

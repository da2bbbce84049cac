package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// handleRequestList is GET /api/requests?status=pending|booked|declined|proposed|all.
func (c *Console) handleRequestList(ctx echo.Context) error {
	list, err := c.listAs(ctx.Request().Context(), user(ctx), ctx.QueryParam("status"))
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, list)
}

// handleRequestShow is GET /api/requests/:id: one request with the
// patient's details; audited.
func (c *Console) handleRequestShow(ctx echo.Context) error {
	e, err := c.viewAs(ctx.Request().Context(), user(ctx), ctx.Param("id"))
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, e)
}

// handleAuditList is GET /api/audit?limit=N (admins): the console's record,
// newest first (100 by default, at most 1,000).
func (c *Console) handleAuditList(ctx echo.Context) error {
	limit := 100
	if v := ctx.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return fieldError("limit", "limit must be a number from 1 to 1000")
		}
		limit = n
	}
	evs, err := c.Audit(ctx.Request().Context(), limit)
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, evs)
}

// handleRequestConfirm is POST /api/requests/:id/confirm.
func (c *Console) handleRequestConfirm(ctx echo.Context) error {
	e, err := c.confirmAs(ctx.Request().Context(), user(ctx), ctx.Param("id"))
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, e)
}

// handleRequestDecline is POST /api/requests/:id/decline with {"reason": "..."}.
func (c *Console) handleRequestDecline(ctx echo.Context) error {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := decodeJSON(ctx, &in); err != nil {
		return err
	}
	e, err := c.declineAs(ctx.Request().Context(), user(ctx), ctx.Param("id"), in.Reason)
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, e)
}

// handleRequestPropose is POST /api/requests/:id/propose with {"slot_id": "..."}.
func (c *Console) handleRequestPropose(ctx echo.Context) error {
	var in struct {
		SlotID string `json:"slot_id"`
	}
	if err := decodeJSON(ctx, &in); err != nil {
		return err
	}
	e, err := c.proposeAs(ctx.Request().Context(), user(ctx), ctx.Param("id"), in.SlotID)
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, e)
}

// handleProviderList is GET /api/providers.
func (c *Console) handleProviderList(ctx echo.Context) error {
	list, err := c.Providers(ctx.Request().Context())
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, list)
}

// handleProviderSet is PUT /api/providers with the whole list.
func (c *Console) handleProviderSet(ctx echo.Context) error {
	var list []services.ProviderSchedule
	if err := decodeJSON(ctx, &list); err != nil {
		return err
	}
	if err := c.SetProviders(ctx.Request().Context(), list); err != nil {
		return err
	}
	return c.handleProviderList(ctx)
}

// decodeJSON decodes the body, one JSON value without unknown fields, into v.
// A malformed body is 400 naming the field when it can; a body over
// BodyLimit is 413.
func decodeJSON(ctx echo.Context, v any) error {
	// Read the whole body first, so that a body over the limit is 413 even
	// when its first bytes are already wrong.
	data, err := io.ReadAll(ctx.Request().Body)
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return he
		}
		return badRequest("request body could not be read", "")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		switch err = dec.Decode(&json.RawMessage{}); {
		case err == io.EOF:
			return nil
		case err == nil:
			return badRequest("request body must hold one JSON value", "")
		}
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return badRequest("request body is empty", "")
	case errors.As(err, &te) && te.Field != "":
		return badRequest(fmt.Sprintf("%s must be a JSON %s", te.Field, jsonKind(te)), te.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(fmt.Sprintf("%s is not a known field", field), field)
	}
	return badRequest("request body is not valid JSON", "")
}

func jsonKind(te *json.UnmarshalTypeError) string {
	switch k := te.Type.Kind().String(); {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "number"
	case k == "slice":
		return "array"
	case k == "map", k == "struct":
		return "object"
	default:
		return k
	}
}

// badRequest is a 400 whose body names field, when there is one.
func badRequest(msg, field string) error {
	body := errorBody{Error: msg}
	if field != "" {
		body.Fields = map[string]string{field: msg}
	}
	return echo.NewHTTPError(http.StatusBadRequest, body)
}

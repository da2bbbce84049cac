package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Errors of the FHIR client.
var (
	// ErrUnreachable means the PMS did not answer, or answered 5xx: try
	// again later.
	ErrUnreachable = errors.New("PMS unreachable")
	// ErrPrecondition is a 412: the resource changed since it was read.
	ErrPrecondition = errors.New("resource changed since it was read")
	// ErrNotFound is a 404 or 410.
	ErrNotFound = errors.New("resource not found")
)

// client speaks FHIR R4 REST (JSON) to one server.
type client struct {
	base string // ends without a slash
	http *http.Client
	auth func(*http.Request)
}

// errRedirect is a redirect the client does not follow.
var errRedirect = errors.New("the server redirected")

// newClient is a client of the server at base over hc, which it follows
// only to base's own scheme and host: a redirect elsewhere, or from https
// to http, would hand the PMS's credentials to another server or send them
// in clear.
func newClient(base string, hc *http.Client) *client {
	h := *hc
	h.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !sameHost(req.URL.String(), base) {
			return fmt.Errorf("%w to %s://%s, not to the configured %s", errRedirect, req.URL.Scheme, req.URL.Host, base)
		}
		if len(via) >= 5 {
			return fmt.Errorf("%w more than 5 times", errRedirect)
		}
		return nil
	}
	return &client{base: base, http: &h}
}

// call sends a request to path (relative to the base, or an absolute URL
// the server gave, such as a next link) and decodes a JSON answer into out
// when out is not nil. It returns the answer's headers.
func (c *client) call(ctx context.Context, method, path string, body any, hdr map[string]string, out any) (http.Header, error) {
	u := path
	if !strings.HasPrefix(path, "http://") && !strings.HasPrefix(path, "https://") {
		u = c.base + "/" + strings.TrimPrefix(path, "/")
	} else if !sameHost(u, c.base) {
		// A next link to another host would get the PMS's credentials.
		return nil, fmt.Errorf("%s %s: the server sent a link to another host", method, resourcePath(u))
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if method == http.MethodGet {
		// Some servers cache searches for a minute; the connector reads a
		// version to write over it, so it needs the current one.
		req.Header.Set("Cache-Control", "no-cache")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c.auth != nil {
		c.auth(req)
	}
	res, err := c.http.Do(req)
	if err != nil {
		// Not err itself: a *url.Error quotes the whole URL, whose query
		// may hold a patient's name and birth date.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, errRedirect) {
			return nil, fmt.Errorf("%s %s: %w", method, resourcePath(u), err) // it answers: not unreachable
		}
		return nil, fmt.Errorf("%s %s: %w: %v", method, resourcePath(u), ErrUnreachable, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %v", method, resourcePath(u), ErrUnreachable, err)
	}
	switch {
	case res.StatusCode == http.StatusPreconditionFailed:
		return res.Header, fmt.Errorf("%s %s: %w", method, resourcePath(u), ErrPrecondition)
	case res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusGone:
		return res.Header, fmt.Errorf("%s %s: %w", method, resourcePath(u), ErrNotFound)
	case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests:
		return res.Header, fmt.Errorf("%s %s: %w: status %d", method, resourcePath(u), ErrUnreachable, res.StatusCode)
	case res.StatusCode >= 300:
		// The server's OperationOutcome may quote the resource: keep only
		// the status, never the body.
		return res.Header, fmt.Errorf("%s %s: status %d", method, resourcePath(u), res.StatusCode)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return res.Header, fmt.Errorf("%s %s: decode: %w", method, resourcePath(u), err)
		}
	}
	return res.Header, nil
}

// resourcePath is u without the server and the query, for errors and logs:
// a query may hold patient data (a name searched for).
func resourcePath(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "?"
	}
	return p.Path
}

// search runs a search and calls fn with every resource of every page,
// following the Bundle's next links.
func (c *client) search(ctx context.Context, typ string, q url.Values, fn func(json.RawMessage) error) error {
	next := typ + "?" + q.Encode()
	seen := map[string]bool{}
	for pages := 0; next != ""; pages++ {
		if pages > 1000 {
			return fmt.Errorf("search %s: more than 1000 pages", typ)
		}
		// A next link to a page already read would loop until the cap,
		// a thousand requests a poll: it is the server's fault, said at once.
		if seen[next] {
			return fmt.Errorf("search %s: the server's next link leads back to page %d", typ, pages)
		}
		seen[next] = true
		var b bundle
		if _, err := c.call(ctx, http.MethodGet, next, nil, nil, &b); err != nil {
			return err
		}
		for _, e := range b.Entry {
			if len(e.Resource) > 0 {
				if err := fn(e.Resource); err != nil {
					return err
				}
			}
		}
		next = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
	}
	return nil
}

// read reads typ/id as a generic JSON object, with its version for If-Match.
func (c *client) read(ctx context.Context, typ, id string) (map[string]any, string, error) {
	var res map[string]any
	hdr, err := c.call(ctx, http.MethodGet, typ+"/"+url.PathEscape(id), nil, nil, &res)
	if err != nil {
		return nil, "", err
	}
	return res, version(res, hdr), nil
}

// update writes res as typ/id only if its version is still ver (If-Match):
// ErrPrecondition otherwise. Resources are read and written as generic
// objects so that what the PMS keeps beyond the fields we know survives.
func (c *client) update(ctx context.Context, typ, id string, res map[string]any, ver string) error {
	hdr := map[string]string{}
	if ver != "" {
		hdr["If-Match"] = `W/"` + ver + `"`
	}
	_, err := c.call(ctx, http.MethodPut, typ+"/"+url.PathEscape(id), res, hdr, nil)
	return err
}

// createIfNone creates res unless a resource matches the search ifNoneExist
// (FHIR conditional create), and returns the ID of the new or matching one.
func (c *client) createIfNone(ctx context.Context, typ string, res any, ifNoneExist url.Values) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	hdr, err := c.call(ctx, http.MethodPost, typ, res, map[string]string{"If-None-Exist": ifNoneExist.Encode()}, &out)
	if err != nil {
		return "", err
	}
	if out.ID == "" { // a server may answer with no body: the Location says
		if loc := hdr.Get("Location"); loc != "" {
			parts := strings.Split(strings.TrimPrefix(resourcePath(loc), "/"), "/")
			for i := range parts {
				if parts[i] == typ && i+1 < len(parts) {
					out.ID = parts[i+1]
				}
			}
		}
	}
	if out.ID == "" {
		return "", fmt.Errorf("create %s: the server gave no id", typ)
	}
	return out.ID, nil
}

// version is a resource's meta.versionId, else the ETag's.
func version(res map[string]any, hdr http.Header) string {
	if m, ok := res["meta"].(map[string]any); ok {
		if v, ok := m["versionId"].(string); ok && v != "" {
			return v
		}
	}
	e := strings.TrimPrefix(hdr.Get("ETag"), "W/")
	return strings.Trim(e, `"`)
}

// fhirTime formats t as a FHIR instant.
func fhirTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// sameHost reports whether URLs a and b have the same scheme and host.
func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Scheme == ub.Scheme && ua.Host == ub.Host
}

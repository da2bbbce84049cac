package web

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"gopkg.in/yaml.v3"

	"github.com/clinicrelay/clinicrelay/services"
)

// The OpenAPI document and the Echo routes must describe the same API: every
// route under /api/v1 is documented with its method, every documented
// operation is routed, and the documented schemas have the JSON names of the
// structs the handlers encode.

const openAPIFile = "../docs/openapi.yaml"

func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	// New needs no Catalog or Booker: they are used only while serving.
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}

	routed := map[string]bool{}
	for _, r := range s.e.Routes() {
		if r.Method == echo.RouteNotFound || r.Path != "/api/v1" && !strings.HasPrefix(r.Path, "/api/v1/") {
			continue
		}
		p, err := openAPIPath(r.Path)
		if err != nil {
			t.Errorf("route %s %s: %v", r.Method, r.Path, err)
			continue
		}
		routed[r.Method+" "+p] = true
	}
	if len(routed) == 0 {
		t.Fatal("no routes under /api/v1")
	}

	paths := doc.child("paths")
	if paths == nil {
		t.Fatalf("%s has no paths", openAPIFile)
	}
	documented := map[string]bool{}
	for p, item := range paths {
		if !strings.HasPrefix(p, "/api/v1/") {
			t.Errorf("%s documents %s, outside /api/v1 (paths are written in full, the server URL is /)", openAPIFile, p)
		}
		for k := range item {
			switch {
			case openAPIMethods[k]:
				documented[strings.ToUpper(k)+" "+p] = true
			case !openAPIPathItemKeys[k]:
				t.Errorf("%s: path %s has unknown key %q", openAPIFile, p, k)
			}
		}
	}

	for _, op := range sortedKeys(routed) {
		if !documented[op] {
			t.Errorf("route %s is not documented in %s", op, openAPIFile)
		}
	}
	for _, op := range sortedKeys(documented) {
		if !routed[op] {
			t.Errorf("%s documents %s, which is not routed", openAPIFile, op)
		}
	}
}

func TestOpenAPISchemasMatchStructs(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := doc.child("components", "schemas")
	for name, typ := range map[string]reflect.Type{
		"Clinic":               reflect.TypeFor[apiClinic](),
		"Provider":             reflect.TypeFor[services.Provider](),
		"Slot":                 reflect.TypeFor[apiSlot](),
		"RequestCreate":        reflect.TypeFor[apiRequest](),
		"Status":               reflect.TypeFor[apiStatus](),
		"Error":                reflect.TypeFor[apiError](),
		"PortalRegister":       reflect.TypeFor[apiPortalRegister](),
		"PortalLogin":          reflect.TypeFor[apiPortalLogin](),
		"PortalSetPassword":    reflect.TypeFor[apiPortalSetPassword](),
		"PortalChangePassword": reflect.TypeFor[apiPortalChange](),
		"PortalLogout":         reflect.TypeFor[apiPortalLogout](),
		"PortalAppointment":    reflect.TypeFor[apiPortalAppointment](),
	} {
		props := schemas.child(name, "properties")
		if props == nil {
			t.Errorf("%s: components.schemas.%s.properties is missing", openAPIFile, name)
			continue
		}
		want := jsonNames(t, typ)
		for _, f := range want {
			if props[f] == nil {
				t.Errorf("schema %s lacks %q, which %s encodes", name, f, typ)
			}
		}
		for _, f := range sortedKeys(props) {
			if !slices.Contains(want, f) {
				t.Errorf("schema %s has %q, which %s does not encode", name, f, typ)
			}
		}
	}
}

var (
	openAPIMethods = map[string]bool{"get": true, "put": true, "post": true, "delete": true,
		"options": true, "head": true, "patch": true, "trace": true}
	openAPIPathItemKeys = map[string]bool{"$ref": true, "summary": true, "description": true,
		"servers": true, "parameters": true}
)

// openAPIPath turns an Echo path into an OpenAPI path template: /a/:b -> /a/{b}.
func openAPIPath(p string) (string, error) {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case strings.Contains(s, "*"):
			return "", fmt.Errorf("a wildcard cannot be described by an OpenAPI path")
		case strings.HasPrefix(s, ":"):
			segs[i] = "{" + s[1:] + "}"
		case strings.Contains(s, ":"):
			return "", fmt.Errorf("a parameter inside a segment is not supported here")
		}
	}
	return strings.Join(segs, "/"), nil
}

// jsonNames lists the JSON object keys encoding/json writes for struct type t.
func jsonNames(t *testing.T, typ reflect.Type) []string {
	t.Helper()
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Anonymous {
			t.Fatalf("%s embeds %s: jsonNames does not follow embedding", typ, f.Type)
		}
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

var openAPIVersionRE = regexp.MustCompile(`(?m)^openapi: *["']?3\.1\.\d+["']? *$`)

func loadOpenAPI(t *testing.T) yamlKeys {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(openAPIFile))
	if err != nil {
		t.Fatal(err)
	}
	if !openAPIVersionRE.Match(b) {
		t.Fatalf("%s does not declare openapi: 3.1.x", openAPIFile)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	return toKeys(doc)
}

// yamlKeys is the tree of mapping keys of a YAML document; scalar values and
// sequences are left out (their keys map to an empty yamlKeys).
type yamlKeys map[string]yamlKeys

// child follows keys down the tree; nil when one is missing.
func (k yamlKeys) child(keys ...string) yamlKeys {
	for _, key := range keys {
		if k == nil {
			return nil
		}
		k = k[key]
	}
	return k
}

// toKeys keeps the mapping keys of a decoded YAML value.
func toKeys(v any) yamlKeys {
	m, ok := v.(map[string]any)
	if !ok {
		return yamlKeys{}
	}
	k := yamlKeys{}
	for key, val := range m {
		k[key] = toKeys(val)
	}
	return k
}

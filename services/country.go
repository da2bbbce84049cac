package services

import (
	_ "embed"
	"strings"
	"sync"
)

//go:embed zonecountry.tab
var zoneCountryTab string

// zoneCountries maps an IANA zone to its country, read once from
// zonecountry.tab.
var zoneCountries = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(zoneCountryTab, "\n") {
		if country, zone, ok := strings.Cut(line, "\t"); ok && !strings.HasPrefix(line, "#") {
			m[zone] = country
		}
	}
	return m
})

// Country is the clinic's country (ISO 3166-1 alpha-2, such as "CA"), the
// one its time zone belongs to; "" for a zone of no country (UTC). A phone
// number written without its country code is read as one of this country.
func (c Clinic) Country() string { return zoneCountries()[c.TimeZone] }

package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// CredsOption is nats.UserJWTAndSeed for the contents of a creds file.
func CredsOption(creds []byte) (nats.Option, error) {
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, fmt.Errorf("creds: no user jwt: %w", err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		return nil, fmt.Errorf("creds: no user seed: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("creds: %w", err)
	}
	return nats.UserJWTAndSeed(token, string(seed)), nil
}

// CredsClinic returns the clinic tag of an agent creds file, so an agent knows
// which clinic it serves without being told twice.
func CredsClinic(creds []byte) (string, error) {
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return "", fmt.Errorf("creds: no user jwt: %w", err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return "", fmt.Errorf("creds: %w", err)
	}
	for _, t := range uc.Tags {
		if len(t) > 7 && t[:7] == "clinic:" {
			return t[7:], nil
		}
	}
	return "", fmt.Errorf("creds: not a clinic agent's (no clinic tag)")
}

// ConnectProblem names why a connection to the relay failed, in words an
// operator can act on, or "" when it is none of these: a certificate from
// a CA not trusted, one for another name (nameHint says how to dial one it
// covers), TLS on one side only, creds refused. (A relay that takes TLS
// only, dialled with nats://, gets TLS: nats.go upgrades.)
func ConnectProblem(err error, nameHint string) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var record tls.RecordHeaderError
	switch {
	case errors.As(err, &unknown):
		return "the relay's certificate is not signed by a CA trusted here: pass --ca FILE with the CA that signed it"
	case errors.As(err, &host):
		return "the relay's certificate is not for the name dialled (" + host.Host + "): " + nameHint
	case errors.As(err, &invalid):
		return "the relay's certificate is not valid: " + invalid.Error()
	case errors.Is(err, nats.ErrSecureConnWanted), errors.As(err, &record):
		return "the relay does not speak TLS but TLS is required here (tls:// or --require-tls)"
	case errors.Is(err, nats.ErrAuthorization):
		return "the relay refused these creds: revoked, or from another relay"
	}
	return ""
}

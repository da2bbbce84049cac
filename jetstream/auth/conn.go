package auth

import (
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

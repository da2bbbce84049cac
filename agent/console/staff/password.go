package staff

import (
	"github.com/clinicrelay/clinicrelay/internal/password"
	"github.com/clinicrelay/clinicrelay/services"
)

// MinPasswordLen is the shortest password accepted, in characters.
const MinPasswordLen = password.MinLen

// CheckPassword says why pw is not acceptable for the user name, or nil
// (password.Check), as an error of the password field.
func CheckPassword(name, pw string) error {
	if err := password.Check(name, pw); err != nil {
		var fe services.FieldErrors
		fe.Add("password", err.Error())
		return fe.Err()
	}
	return nil
}

package console

import "github.com/labstack/echo/v4"

// RoutesOf lists c's routes, for the test that every one needs a session.
func RoutesOf(c *Console) []*echo.Route { return c.echo.Routes() }

// Package greeting says hello.
package greeting

import "fmt"

// Hello greets someone by name.
func Hello(name string) string {
	return fmt.Sprintf("Hello, %s!", name)
}

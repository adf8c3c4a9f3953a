package greeting

import "fmt"

// Goodbye says farewell to someone by name.
func Goodbye(name string) string {
	return fmt.Sprintf("Goodbye, %s!", name)
}

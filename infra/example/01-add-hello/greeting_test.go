package greeting

import "testing"

func TestHello(t *testing.T) {
	if got, want := Hello("Gopher"), "Hello, Gopher!"; got != want {
		t.Errorf("Hello() = %q, want %q", got, want)
	}
}

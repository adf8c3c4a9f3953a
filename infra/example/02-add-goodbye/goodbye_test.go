package greeting

import "testing"

func TestGoodbye(t *testing.T) {
	if got, want := Goodbye("Gopher"), "Goodbye, Gopher!"; got != want {
		t.Errorf("Goodbye() = %q, want %q", got, want)
	}
}

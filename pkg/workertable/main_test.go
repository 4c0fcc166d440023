package workertable

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that Watch leaves no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

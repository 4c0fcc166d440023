package sdnotify

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain doubles as a notifying child: with ZD_SDNOTIFY_CHILD=notify it
// sends $ZD_SDNOTIFY_STATE with Notify(os.Getenv, ...), like an app would.
func TestMain(m *testing.M) {
	if os.Getenv("ZD_SDNOTIFY_CHILD") == "notify" {
		sent, err := Notify(os.Getenv, os.Getenv("ZD_SDNOTIFY_STATE"))
		if !sent || err != nil {
			fmt.Fprintf(os.Stderr, "Notify = %v, %v\n", sent, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

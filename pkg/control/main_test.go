package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain doubles as a client process: with ZD_CONTROL_CHILD=call it calls
// op "echo" on the socket given as the last argument and prints the error
// code (or "ok"), so tests can act as another user through setpriv.
func TestMain(m *testing.M) {
	if os.Getenv("ZD_CONTROL_CHILD") == "call" {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var out string
		err := Call(ctx, os.Args[len(os.Args)-1], "echo", "hi", &out)
		cancel()
		var e *Error
		switch {
		case err == nil:
			fmt.Println("ok " + out)
		case errors.As(err, &e):
			fmt.Println("code " + e.Code + ": " + e.Message)
		default:
			fmt.Println("error " + err.Error())
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

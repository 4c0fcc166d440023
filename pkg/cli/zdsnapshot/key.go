package zdsnapshot

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/snapshot"
)

// loadKey returns the key of --key-file, else $ZD_SNAPSHOT_KEY, else the
// origin's $CONNECTION_STATE_KEY, else nil (no key). A key file readable by
// others is refused, as ssh refuses such a private key.
func loadKey(c *cli.Command, io cmdkit.IO) ([]byte, error) {
	if path := c.String("key-file"); path != "" {
		k, err := snapshot.ReadKeyFile(path)
		if err == nil {
			return k, nil
		}
		hint := "a key is 32 bytes as 64 hex digits or base64; zd-snapshot keygen -o FILE makes one"
		if strings.Contains(err.Error(), "others may read it") {
			hint = fmt.Sprintf("chmod 600 %s (then check who read it)", path)
		}
		return nil, &cmdkit.Error{Code: ExitKeyMissing, Err: err, Hint: hint}
	}
	k, _, err := snapshot.KeyFromEnv(io.Getenv)
	if err != nil {
		return nil, &cmdkit.Error{Code: ExitKeyMissing, Err: err,
			Hint: "set it to 64 hex digits or base64 of 32 bytes (zd-snapshot keygen prints one); a passphrase is not a key"}
	}
	return k, nil
}

// runKeygen prints a new key, or writes it to a new file with mode 0600.
func runKeygen(_ context.Context, c *cli.Command, io cmdkit.IO) error {
	key := snapshot.GenerateKey()
	text := snapshot.FormatKey(key) + "\n"
	path := c.String("output")
	if path == "" {
		_, err := fmt.Fprint(io.Stdout, text)
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if c.Bool("force") {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		if os.IsExist(err) {
			return cmdkit.Failf(cmdkit.ExitFailure, "a key in use must not be lost: choose another path, or --force to replace it",
				"%s exists; the key in it is kept", path)
		}
		return err
	}
	// An existing file replaced with --force keeps its mode: make it 0600.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(io.Stderr, "zd-snapshot: wrote a new key (key id %s) to %s\n", snapshot.KeyID(key), path)
	return nil
}

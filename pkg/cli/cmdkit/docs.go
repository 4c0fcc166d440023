package cmdkit

import (
	"os"
	"strings"

	"github.com/urfave/cli/v3"
)

// Undocumented lists the flags of cmd and its subcommands (as --name), and
// the environment variables they read, that appear in none of docs: the
// texts of the README and the man page, which must name every one. A man
// page's "\-" escapes count as "-".
func Undocumented(cmd *cli.Command, docs ...string) []string {
	text := strings.ReplaceAll(strings.Join(docs, "\n"), `\-`, "-")
	seen := map[string]bool{}
	var missing []string
	var walk func(c *cli.Command)
	walk = func(c *cli.Command) {
		for _, f := range c.Flags {
			for _, name := range f.Names() {
				if len(name) < 2 || name == "help" || name == "version" || seen[name] {
					continue
				}
				seen[name] = true
				if !strings.Contains(text, "--"+name) {
					missing = append(missing, "--"+name)
				}
			}
			if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
				for _, e := range ev.GetEnvVars() {
					if !seen[e] && !strings.Contains(text, e) {
						missing = append(missing, e)
					}
					seen[e] = true
				}
			}
		}
		for _, sub := range c.Commands {
			walk(sub)
		}
	}
	walk(cmd)
	return missing
}

// TB is the part of *testing.T CheckDocumented uses (cmdkit is not a test
// package, so it does not import testing).
type TB interface {
	Helper()
	Fatal(args ...any)
	Errorf(format string, args ...any)
}

// CheckDocumented fails t for every file in files (the README, the man
// page) that does not name every flag and environment variable of cmd.
func CheckDocumented(t TB, cmd *cli.Command, files ...string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if missing := Undocumented(cmd, string(b)); len(missing) > 0 {
			t.Errorf("%s does not mention %v", f, missing)
		}
	}
}

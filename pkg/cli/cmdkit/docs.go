package cmdkit

import (
	"os"
	"regexp"
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

// roffFont matches the man pages' font switches (\fB, \fI, \fR, \fP).
var roffFont = regexp.MustCompile(`\\f[BIRP]`)

// plainDocs turns README and man page text into plain words for matching
// usage lines: no font switches or escapes, markdown's "\|" a "|", every run
// of white space one space.
func plainDocs(docs []string) string {
	text := strings.Join(docs, "\n")
	text = roffFont.ReplaceAllString(text, "")
	text = strings.NewReplacer(`\-`, "-", `\|`, "|", "`", "").Replace(text)
	return strings.Join(strings.Fields(text), " ")
}

// UndocumentedCommands lists what of cmd's command tree appears in none of
// docs: every command by its path below the root ("reload", "queue
// drain"), and for every command that takes arguments its usage line
// ("rollback [GENERATION|PATH]"; the root's as "zd-run [flags] -- CMD
// [ARGS...]"). The help and completion commands the library adds are not
// checked.
func UndocumentedCommands(cmd *cli.Command, docs ...string) []string {
	text := plainDocs(docs)
	var missing []string
	var walk func(c *cli.Command, path string)
	walk = func(c *cli.Command, path string) {
		name := path
		if name == "" {
			name = c.Name
		}
		if c.ArgsUsage != "" && !strings.Contains(text, name+" "+c.ArgsUsage) {
			missing = append(missing, name+" "+c.ArgsUsage)
		}
		for _, sub := range c.Commands {
			if sub.Hidden || sub.Name == "help" || sub.Name == "completion" {
				continue
			}
			p := strings.TrimSpace(path + " " + sub.Name)
			if !strings.Contains(text, p) {
				missing = append(missing, p)
			}
			walk(sub, p)
		}
	}
	walk(cmd, "")
	return missing
}

// CheckCommandsDocumented fails t for every file in files that does not
// name every command and argument usage of cmd (UndocumentedCommands).
func CheckCommandsDocumented(t TB, cmd *cli.Command, files ...string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if missing := UndocumentedCommands(cmd, string(b)); len(missing) > 0 {
			t.Errorf("%s does not mention %q", f, missing)
		}
	}
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

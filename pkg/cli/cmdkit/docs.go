package cmdkit

import (
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

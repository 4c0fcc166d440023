package cmdkit

import (
	"context"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v3"
)

// joinBoolValues rewrites "--flag true" and "--flag false" (a boolean flag
// followed by the word true or false) into "--flag=true" and
// "--flag=false", which is how urfave/cli takes a boolean's value: its
// parser never gives a boolean flag the next word, so "--auto-buffer false"
// would be an unexpected argument. Only those two words are joined, so a
// command named like any other word after a boolean flag stays an argument;
// nothing after "--" or past a command's StopOnNthArg is touched.
func joinBoolValues(root *cli.Command, args []string) []string {
	out := slices.Clone(args)
	chain := []*cli.Command{root}
	npos := 0
	for i := 1; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		if len(a) > 1 && a[0] == '-' {
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			f := lookupFlag(chain, name)
			if f == nil {
				continue
			}
			if !isBool(f) {
				i++ // its value
				continue
			}
			if i+1 < len(out) {
				if w := strings.ToLower(out[i+1]); w == "true" || w == "false" {
					out[i] = a + "=" + w
					out = slices.Delete(out, i+1, i+2)
				}
			}
			continue
		}
		cur := chain[len(chain)-1]
		if sub := subcommand(cur, a); sub != nil && npos == 0 {
			chain = append(chain, sub)
			continue
		}
		npos++
		if cur.StopOnNthArg != nil && npos >= *cur.StopOnNthArg {
			break
		}
	}
	return out
}

// lookupFlag finds name among the flags of chain (a command and its
// ancestors, innermost last: flags are inherited by subcommands).
func lookupFlag(chain []*cli.Command, name string) cli.Flag {
	for i := len(chain) - 1; i >= 0; i-- {
		for _, f := range chain[i].Flags {
			if slices.Contains(f.Names(), name) {
				return f
			}
		}
	}
	return nil
}

func subcommand(c *cli.Command, name string) *cli.Command {
	for _, sub := range c.Commands {
		if sub.Name == name || slices.Contains(sub.Aliases, name) {
			return sub
		}
	}
	return nil
}

// isBool reports whether f is a boolean flag. Not IsBoolFlag: that asks the
// flag's value, which exists only once the command runs.
func isBool(f cli.Flag) bool {
	b, ok := f.(interface{ TakesValue() bool })
	return ok && !b.TakesValue()
}

// RefuseArgs makes every command of the tree that declares no arguments
// (an empty ArgsUsage) refuse any it is given, with exit 2 and a hint,
// instead of ignoring them: `zdctl stop billing` must not stop the service
// --name chose while the operator meant billing. Commands with an
// ArgsUsage check their own.
func RefuseArgs(cmd *cli.Command) {
	for _, sub := range cmd.Commands {
		RefuseArgs(sub)
	}
	if cmd.ArgsUsage != "" || cmd.Action == nil || len(cmd.Commands) > 0 {
		return
	}
	action := cmd.Action
	cmd.Action = func(ctx context.Context, c *cli.Command) error {
		if c.Args().Len() > 0 {
			return TooManyArgs(c, 0)
		}
		return action(ctx, c)
	}
}

// TooManyArgs is the usage error of command c given more than max
// arguments.
func TooManyArgs(c *cli.Command, max int) *Error {
	extra := c.Args().Get(max)
	hint := "run '" + c.FullName() + " --help' to see the usage"
	if root := c.Root(); root != c && max == 0 {
		for _, f := range root.Flags {
			if slices.Contains(f.Names(), "name") {
				// The likeliest slip: naming the service after the command.
				hint = "the service is chosen before the command: " + root.Name + " --name " + extra + " " +
					strings.TrimPrefix(c.FullName(), root.Name+" ") + "; " + hint
				break
			}
		}
	}
	if max == 0 {
		return UsageError(hint, "%s takes no arguments, got %q", c.FullName(), extra)
	}
	return UsageError(hint, "%s takes at most %d argument(s), got %q too", c.FullName(), max, extra)
}

var (
	flagValueRE = regexp.MustCompile(`^invalid value "(.*)" for flag -+([^:]+): (.*)$`)
	envValueRE  = regexp.MustCompile(`^could not parse "(.*)" as \S+ value from environment variable "([^"]+)" for flag ([^:]+): (.*)$`)
)

// usageMessage rewords the cli library's flag errors so that no parser
// internals (strconv.ParseInt: parsing "x": invalid syntax) reach the user.
func usageMessage(msg string) string {
	if m := flagValueRE.FindStringSubmatch(msg); m != nil {
		return "--" + m[2] + " " + quote(m[1]) + ": " + valueProblem(m[3])
	}
	if m := envValueRE.FindStringSubmatch(msg); m != nil {
		return m[2] + "=" + quote(m[1]) + " (--" + m[3] + "): " + valueProblem(m[4])
	}
	return msg
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func valueProblem(cause string) string {
	switch {
	case strings.Contains(cause, "out of range"):
		return "out of range"
	case strings.HasPrefix(cause, "strconv.ParseInt"), strings.HasPrefix(cause, "strconv.ParseUint"):
		return "not a whole number"
	case strings.HasPrefix(cause, "strconv.ParseFloat"):
		return "not a number"
	case cause == "parse error", strings.HasPrefix(cause, "strconv.ParseBool"):
		return "not true or false"
	case strings.HasPrefix(cause, "strconv."), strings.HasPrefix(cause, "time:"):
		return "not a valid value"
	}
	return cause
}

package cmdkit

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"
)

func testTree(got *[]string) *cli.Command {
	one := 1
	record := func(_ context.Context, c *cli.Command) error {
		*got = append(*got, c.Name+" json="+strconv.FormatBool(c.Bool("json"))+" args="+strings.Join(c.Args().Slice(), ","))
		return nil
	}
	return &cli.Command{
		Name:  "prog",
		Flags: []cli.Flag{&cli.StringFlag{Name: "name"}, &cli.BoolFlag{Name: "check"}},
		Commands: []*cli.Command{
			{Name: "status", Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}, &cli.StringFlag{Name: "timeout"}}, Action: record},
			{Name: "rollback", ArgsUsage: "[TARGET]", Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}}, Action: record},
			{Name: "run", StopOnNthArg: &one, Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}}, Action: record},
		},
	}
}

func TestJoinBoolValues(t *testing.T) {
	var got []string
	root := testTree(&got)
	for _, c := range []struct{ in, want string }{
		{"prog status --json false", "prog status --json=false"},
		{"prog status --json TRUE --timeout false", "prog status --json=true --timeout false"},
		{"prog --check true status", "prog --check=true status"},
		{"prog --name false status --json", "prog --name false status --json"},
		{"prog rollback --json 42", "prog rollback --json 42"},
		{"prog run app --json false", "prog run app --json false"},
		{"prog status -- --json false", "prog status -- --json false"},
		{"prog status --json=false true", "prog status --json=false true"},
	} {
		if out := strings.Join(joinBoolValues(root, strings.Fields(c.in)), " "); out != c.want {
			t.Errorf("joinBoolValues(%q) = %q; want %q", c.in, out, c.want)
		}
	}
}

// Run: "--json false" is a value, extra words are refused (exit 2), and bad
// values are reworded without the parser's internals.
func TestRunArgs(t *testing.T) {
	for _, c := range []struct {
		args   string
		code   int
		output string
	}{
		{"prog status --json false", 0, "status json=false args="},
		{"prog status --json", 0, "status json=true args="},
		{"prog status billing", 2, `prog status takes no arguments, got "billing"`},
		{"prog status billing", 2, "hint: the service is chosen before the command: prog --name billing status"},
		{"prog rollback 42", 0, "rollback json=false args=42"},
		{"prog status --json=maybe", 2, `--json "maybe": not true or false`},
	} {
		var got []string
		root := testTree(&got)
		RefuseArgs(root)
		var out, errb bytes.Buffer
		code := Run(context.Background(), root, strings.Fields(c.args), IO{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
		text := strings.Join(got, "\n") + errb.String()
		if code != c.code || !strings.Contains(text, c.output) {
			t.Errorf("Run(%q) = %d, %q; want %d and %q", c.args, code, text, c.code, c.output)
		}
		if strings.Contains(text, "strconv") || strings.Contains(text, "parse error") {
			t.Errorf("Run(%q) shows parser internals: %q", c.args, text)
		}
	}
}

func TestUsageMessage(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`invalid value "x" for flag -workers: strconv.ParseInt: parsing "x": invalid syntax`, `--workers "x": not a whole number`},
		{`invalid value "1e99" for flag -workers: strconv.ParseInt: parsing "1e99": value out of range`, `--workers "1e99": out of range`},
		{`invalid value "x" for flag -cpu-limit: strconv.ParseFloat: parsing "x": invalid syntax`, `--cpu-limit "x": not a number`},
		{`could not parse "many" as *cli.intValue value from environment variable "WORKER_COUNT" for flag workers: strconv.ParseInt: parsing "many": invalid syntax`,
			`WORKER_COUNT="many" (--workers): not a whole number`},
		{"flag provided but not defined: -x", "flag provided but not defined: -x"},
	} {
		if got := usageMessage(c.in); got != c.want {
			t.Errorf("usageMessage(%q) = %q; want %q", c.in, got, c.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // the duration, or "error"
	}{
		{"30", "30s"}, {"1.5", "1.5s"}, {"0", "0s"}, {"500ms", "500ms"}, {"1m30s", "1m30s"},
		{"-1", "error"}, {"-1s", "error"}, {"soon", "error"}, {"", "error"}, {"NaN", "error"}, {"1e300", "error"},
	} {
		d, err := ParseDuration(c.in)
		got := "error"
		if err == nil {
			got = d.String()
		} else if strings.Contains(err.Error(), "time:") || strings.Contains(err.Error(), "strconv") {
			t.Errorf("ParseDuration(%q) error %q shows the parser's internals", c.in, err)
		}
		if got != c.want {
			t.Errorf("ParseDuration(%q) = %s (%v); want %s", c.in, got, err, c.want)
		}
	}
}

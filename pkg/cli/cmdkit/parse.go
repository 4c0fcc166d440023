package cmdkit

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
)

// DurationSyntax is how every zd program's duration flags are written, for
// hints.
const DurationSyntax = "a bare number of seconds (30, 1.5) or a duration like 30s, 2m or 1m30s"

// ParseDuration reads a duration flag the one way all zd programs do: a
// bare number is seconds (the origin's GRACEFUL_SHUTDOWN_TIMEOUT=30 style),
// anything else a Go duration (500ms, 30s, 1m30s). Negative values and
// overflows are errors; the error says what was wrong in words, never in
// the parser's.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty, want " + DurationSyntax)
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0):
			return 0, errors.New("not a duration, want " + DurationSyntax)
		case f < 0:
			return 0, errors.New("negative")
		case f*float64(time.Second) > math.MaxInt64:
			return 0, errors.New("too long")
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if strings.Contains(err.Error(), "overflow") {
			return 0, errors.New("too long")
		}
		return 0, errors.New("not a duration, want " + DurationSyntax)
	}
	if d < 0 {
		return 0, errors.New("negative")
	}
	return d, nil
}

// DurationFlag is cli.DurationFlag with the zd syntax (ParseDuration): a
// bare number is seconds, so --grace 30 means what it means in every other
// zd program. cmd.Duration(name) reads it as usual.
type DurationFlag = cli.FlagBase[time.Duration, cli.NoConfig, durationValue]

type durationValue time.Duration

// Create implements cli.ValueCreator.
func (durationValue) Create(v time.Duration, p *time.Duration, _ cli.NoConfig) cli.Value {
	*p = v
	return (*durationValue)(p)
}

// ToString implements cli.ValueCreator.
func (durationValue) ToString(v time.Duration) string { return v.String() }

func (d *durationValue) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

func (d *durationValue) Get() any { return time.Duration(*d) }

func (d *durationValue) String() string { return time.Duration(*d).String() }

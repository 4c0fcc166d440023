package cmdkit

import (
	"io"
	"log/slog"
	"strings"
)

// NewLogger builds the one slog.Logger of a program run. format is "text" or
// "json"; level is debug, info, warn or error.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, UsageError("use --log-level debug|info|warn|error", "bad log level %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, UsageError("use --log-format text|json", "bad log format %q", format)
}

// Discard is a logger that drops everything, for tests and quiet paths.
func Discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

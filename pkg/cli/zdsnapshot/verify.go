package zdsnapshot

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/snapshot"
)

// verifyResult is what verify --json prints.
type verifyResult struct {
	File    string `json:"file"`
	OK      bool   `json:"ok"`
	Records int64  `json:"records"`
	Chunks  int    `json:"chunks"`
	Codec   string `json:"codec,omitempty"`
	Cipher  string `json:"cipher,omitempty"`
	KeyID   string `json:"key_id,omitempty"`
	Schema  int    `json:"schema,omitempty"`
	Failed  string `json:"failed,omitempty"` // integrity, key or schema
	Error   string `json:"error,omitempty"`
	Code    int    `json:"exit_code"`
}

// runVerify reads the whole file: every chunk authenticated, every record
// checked against the schema, the end marker and its counts.
func runVerify(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	args, key, err := openArg(c, io, 1)
	if err != nil {
		return err
	}
	path := args[0]
	res := verifyResult{File: path}
	err = func() error {
		r, closeIn, err := openFile(path, key, io)
		if err != nil {
			return err
		}
		defer closeIn()
		h := r.Header()
		res.Codec, res.Cipher, res.KeyID, res.Schema = codecText(h), h.Cipher, h.KeyID, h.Schema
		var rec snapshot.Record
		for {
			if err := r.Read(&rec); isEOF(err) {
				break
			} else if err != nil {
				res.Records, res.Chunks = r.Count(), r.Chunks()
				return fileError(path, err)
			}
			if r.Count()%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
		}
		res.Records, res.Chunks = r.Count(), r.Chunks()
		return nil
	}()
	res.Code = cmdkit.Code(err)
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
		res.Failed = failedClass(res.Code)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(io.Stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(res); jerr != nil {
			return jerr
		}
		if err != nil {
			// The JSON said it; keep the exit code and the message on stderr.
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	keyText := "plain"
	if res.Cipher != snapshot.CipherNone {
		keyText = res.Cipher + " key id " + res.KeyID
	}
	fmt.Fprintf(io.Stdout, "ok: %s: %d records in %d chunks, %s, %s, schema %d\n", path, res.Records, res.Chunks, res.Codec, keyText, res.Schema)
	return nil
}

// failedClass names the check an exit code belongs to.
func failedClass(code int) string {
	switch {
	case code >= ExitNotZDS && code <= ExitCorrupt:
		return "integrity"
	case code == ExitWrongKey || code == ExitKeyMissing:
		return "key"
	case code == ExitSchema:
		return "schema"
	}
	return "other"
}

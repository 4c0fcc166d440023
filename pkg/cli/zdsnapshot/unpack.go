package zdsnapshot

import (
	"bufio"
	"context"
	"encoding/json"
	"os"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/snapshot"
)

// openArg checks that the command got args file arguments (- for stdin)
// and loads the key in effect; it returns the arguments and the key.
func openArg(c *cli.Command, io cmdkit.IO, args int) ([]string, []byte, error) {
	if c.Args().Len() != args {
		what := "a FILE"
		if args == 2 {
			what = "two files, A and B"
		}
		return nil, nil, cmdkit.UsageError("run '"+c.FullName()+" --help' to see the usage", "%s takes %s (- for stdin)", c.FullName(), what)
	}
	key, err := loadKey(c, io)
	if err != nil {
		return nil, nil, err
	}
	return c.Args().Slice(), key, nil
}

// openFile opens path (- for stdin) as a snapshot; close closes it.
func openFile(path string, key []byte, io cmdkit.IO) (r *snapshot.Reader, close func(), err error) {
	in := io.Stdin
	close = func() {}
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, fileError(path, err)
		}
		in, close = f, func() { f.Close() }
	}
	r, err = snapshot.NewReader(in, key)
	if err != nil {
		close()
		return nil, nil, fileError(path, err)
	}
	return r, close, nil
}

func parseFilter(c *cli.Command) (snapshot.Filter, error) {
	f, err := snapshot.ParseFilter(c.String("filter"))
	if err != nil {
		return f, cmdkit.UsageError("e.g. --filter kind=ws-session,state=active|idle,worker=412", "%v", err)
	}
	return f, nil
}

func runUnpack(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	args, key, err := openArg(c, io, 1)
	if err != nil {
		return err
	}
	filter, err := parseFilter(c)
	if err != nil {
		return err
	}
	limit := c.Int("limit")
	r, closeIn, err := openFile(args[0], key, io)
	if err != nil {
		return err
	}
	defer closeIn()
	bw := bufio.NewWriterSize(io.Stdout, 256<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var rec snapshot.Record
	n := 0
	for limit <= 0 || n < limit {
		if err := r.Read(&rec); isEOF(err) {
			break
		} else if err != nil {
			bw.Flush()
			return fileError(args[0], err)
		}
		if r.Count()%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if !filter.Match(&rec) {
			continue
		}
		if err := enc.Encode(&rec); err != nil {
			return err
		}
		n++
	}
	return bw.Flush()
}

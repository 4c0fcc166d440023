// Package cmdkit is what the five zd programs share at the command line: one
// exit-code convention, errors that carry a hint, the version string, logger
// setup and the glue that runs a urfave/cli command tree without letting the
// library exit the process.
//
// Every program's Main looks the same:
//
//	func Main(ctx context.Context, args []string, io cmdkit.IO) int {
//		return cmdkit.Run(ctx, newCommand(io), args, io)
//	}
package cmdkit

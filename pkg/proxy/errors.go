package proxy

import "errors"

// ErrUnknownBackend means a backend address named in an operation is not in
// the backend set.
var ErrUnknownBackend = errors.New("no such backend")

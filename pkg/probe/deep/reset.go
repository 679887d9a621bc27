package deep

import (
	"errors"
	"syscall"
)

// isReset reports a TCP reset or broken pipe: the peer dropped the
// connection rather than answer the hello.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

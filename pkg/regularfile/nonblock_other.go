//go:build !unix

package regularfile

const nonblock = 0

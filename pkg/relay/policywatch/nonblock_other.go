//go:build !unix

package policywatch

const nonblock = 0

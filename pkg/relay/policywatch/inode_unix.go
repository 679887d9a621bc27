//go:build unix

package policywatch

import (
	"os"
	"syscall"
)

// inode tells a renamed-in file from the one it replaced even when size
// and mtime happen to match.
func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Ino)
	}
	return 0
}

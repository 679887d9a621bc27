package policywatch

import (
	"os"
	"syscall"
	"time"
)

// inode tells a renamed-in file from the one it replaced even when size
// and mtime happen to match; ctime moves on every write and chmod, even
// one that sets mtime back.
func inode(fi os.FileInfo) (uint64, time.Time) {
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Ino), time.Unix(int64(s.Ctim.Sec), int64(s.Ctim.Nsec))
	}
	return 0, time.Time{}
}

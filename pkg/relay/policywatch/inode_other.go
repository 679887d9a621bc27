//go:build !linux

package policywatch

import (
	"os"
	"time"
)

func inode(os.FileInfo) (uint64, time.Time) { return 0, time.Time{} }

//go:build !linux

package safeio

import "os"

// Datasync flushes f's data; without fdatasync(2) it is a full fsync.
func Datasync(f *os.File) error { return f.Sync() }

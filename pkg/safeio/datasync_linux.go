package safeio

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Datasync flushes f's data, and only the metadata needed to read it
// back (its size), with fdatasync(2): a file appended to or overwritten
// in place needs no timestamps on disk to be readable after a crash,
// which spares a journal write per call.
func Datasync(f *os.File) error {
	for {
		// A raw system call, unlike os.File's methods, is not retried
		// on EINTR by the runtime.
		err := unix.Fdatasync(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

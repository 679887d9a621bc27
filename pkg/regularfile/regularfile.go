// Package regularfile opens and reads configuration files that a
// daemon reads while it runs (policy, journal, auth file) so that a path
// pointed at something else cannot hang or exhaust it: the open does not
// block (a FIFO waits for a writer otherwise), only a regular file is
// accepted (not a FIFO, a socket, a device such as /dev/zero, a
// directory), and a read stops at a size limit.
package regularfile

import (
	"fmt"
	"io"
	"os"
)

// Open opens path for reading without blocking and returns the file and
// what fstat(2) says of it, or an error if it is not a regular file.
func Open(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|nonblock, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fi, fmt.Errorf("%s: not a regular file (%s)", path, TypeName(fi.Mode()))
	}
	return f, fi, nil
}

// ReadAll reads f, of which fi is the fstat, refusing more than limit
// bytes, even if the file grows while it is read.
func ReadAll(f *os.File, fi os.FileInfo, limit int64) ([]byte, error) {
	if fi.Size() > limit {
		return nil, tooLarge(f.Name(), fi.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(f.Name(), int64(len(data)), limit)
	}
	return data, nil
}

// ReadFile is Open and ReadAll.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, fi, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, fi, limit)
}

func tooLarge(path string, size, limit int64) error {
	return fmt.Errorf("%s: %d bytes or more, larger than the %s allowed", path, size, human(limit))
}

func human(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// TypeName says what kind of file a mode is, for error messages.
func TypeName(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "type " + m.Type().String()
}

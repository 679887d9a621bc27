package policywatch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// MaxSize bounds the policy file the relay reads. A real policy of
// 100,000 entries is a few MB; the bound keeps a path pointed at a
// device or a runaway file from growing the relay's memory.
const MaxSize = 32 << 20

// readTimeout bounds one read of the policy file. A local file reads in
// microseconds; this only fires on a hung network or FUSE file system.
const readTimeout = 5 * time.Second

// errChanging: the file changed while it was read, so what was read may
// be half old and half new. Not a fault of the file: it is read again
// once the writer is done.
var errChanging = errors.New("the file changed while it was read")

// readRegular reads the file at path if it is a regular file of at most
// limit bytes. It opens the file non-blocking, so a FIFO cannot hold the
// open (which waits for a writer otherwise), then checks what it opened:
// a FIFO, socket or device (/dev/zero) is refused before a byte is read.
// The stamp is the file's identity when it was read; a file whose stamp
// differs before and after the read is errChanging.
func readRegular(path string, limit int64) ([]byte, fileStamp, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|nonblock, 0)
	if err != nil {
		return nil, fileStamp{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, err
	}
	before := stampFrom(fi)
	if !fi.Mode().IsRegular() {
		return nil, before, fmt.Errorf("not a regular file (%s): only a regular file is read as a policy", typeName(fi.Mode()))
	}
	if fi.Size() > limit {
		return nil, before, fmt.Errorf("%d bytes, larger than the %d MiB a policy file may have", fi.Size(), limit>>20)
	}
	// The limit holds even if the file grows while it is read.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, before, err
	}
	if int64(len(data)) > limit {
		return nil, before, fmt.Errorf("larger than the %d MiB a policy file may have", limit>>20)
	}
	fi, err = f.Stat()
	if err != nil {
		return nil, before, err
	}
	if after := stampFrom(fi); after != before || int64(len(data)) != fi.Size() {
		return nil, after, errChanging
	}
	return data, before, nil
}

func typeName(m os.FileMode) string {
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
	}
	return m.Type().String()
}

// fileStamp identifies a version of the file cheaply: a rename brings
// another inode, a write in place changes size, mtime or ctime.
type fileStamp struct {
	exists bool
	ino    uint64
	size   int64
	mtime  time.Time
	ctime  time.Time
}

// unknownStamp equals no file's stamp: after a read that did not
// return, the poll tries again.
var unknownStamp = fileStamp{exists: true, size: -1}

func stampFrom(fi os.FileInfo) fileStamp {
	ino, ctime := inode(fi)
	return fileStamp{exists: true, ino: ino, size: fi.Size(), mtime: fi.ModTime(), ctime: ctime}
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return stampFrom(fi)
}

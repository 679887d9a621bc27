package policywatch

import (
	"errors"
	"os"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/regularfile"
)

// MaxSize bounds the policy file the relay reads (policy.MaxFileSize).
const MaxSize = policy.MaxFileSize

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
	f, fi, err := regularfile.Open(path)
	if err != nil {
		if fi != nil {
			return nil, stampFrom(fi), err
		}
		return nil, fileStamp{}, err
	}
	defer f.Close()
	before := stampFrom(fi)
	data, err := regularfile.ReadAll(f, fi, limit)
	if err != nil {
		return nil, before, err
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

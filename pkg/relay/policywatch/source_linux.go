package policywatch

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// inotify(7) directly rather than fsnotify: the watcher needs
// IN_CLOSE_WRITE, the one event that says a writer is done with the
// file, and fsnotify (v1.10) keeps it unexported.
//
// Two watches: the file's directory, which sees a new file renamed or
// created under the policy's name (`smgctl policy`, editors, a
// Kubernetes ..data swap), and the file itself (through symbolic links),
// which sees writes in place wherever the file really lives.
const (
	dirMask = unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB | unix.IN_CREATE |
		unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
		unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
	fileMask = unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB |
		unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
)

type inotifySource struct {
	path, dir, base string
	f               *os.File
	fd              int
	ch              chan change
	done            chan struct{}

	mu            sync.Mutex
	dirWd, fileWd int // -1: none
}

func newSource(path string) (source, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	s := &inotifySource{
		path: path, dir: filepath.Dir(path), base: filepath.Base(path),
		// A non-blocking descriptor goes to the runtime poller, so
		// Close wakes a pending Read.
		f: os.NewFile(uintptr(fd), "inotify"), fd: fd,
		ch: make(chan change, 64), done: make(chan struct{}),
		dirWd: -1, fileWd: -1,
	}
	s.Watch()
	go s.read()
	return s, nil
}

func (s *inotifySource) Changes() <-chan change { return s.ch }

// Watch (re)adds the watches: the directory may appear later, and the
// name may point at a new file since the last call. Adding a watch on an
// inode already watched returns the same descriptor.
func (s *inotifySource) Watch() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirWd < 0 {
		if wd, err := unix.InotifyAddWatch(s.fd, s.dir, dirMask); err == nil {
			s.dirWd = wd
		}
	}
	wd, err := unix.InotifyAddWatch(s.fd, s.path, fileMask)
	if err != nil {
		wd = -1
	}
	if s.fileWd >= 0 && s.fileWd != wd && s.fileWd != s.dirWd {
		// The name moved on to another file: writes to the old
		// one no longer matter.
		unix.InotifyRmWatch(s.fd, uint32(s.fileWd))
	}
	s.fileWd = wd
	return s.dirWd >= 0
}

func (s *inotifySource) Close() error {
	close(s.done)
	return s.f.Close()
}

func (s *inotifySource) read() {
	buf := make([]byte, 64<<10)
	for {
		n, err := s.f.Read(buf)
		if err != nil {
			return // closed
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int(int32(binary.NativeEndian.Uint32(buf[off:])))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			off += unix.SizeofInotifyEvent
			name := strings.TrimRight(string(buf[off:min(off+nameLen, n)]), "\x00")
			off += nameLen
			c, ok := s.classify(wd, mask, name)
			if !ok {
				continue
			}
			select {
			case s.ch <- c:
			case <-s.done:
				return
			}
		}
	}
}

// classify turns one inotify event into what it means for the policy
// file; ok is false for events about other files.
func (s *inotifySource) classify(wd int, mask uint32, name string) (c change, ok bool) {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		return changeLost, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case wd < 0:
		return 0, false
	case wd == s.fileWd:
		switch {
		case mask&unix.IN_MODIFY != 0:
			return changeWrite, true
		case mask&unix.IN_CLOSE_WRITE != 0:
			return changeClosed, true
		case mask&unix.IN_ATTRIB != 0:
			return changeAttr, true
		case mask&unix.IN_IGNORED != 0:
			s.fileWd = -1 // the file is gone
		}
		return changeReplaced, true
	case wd == s.dirWd:
		if mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0 {
			if mask&unix.IN_IGNORED == 0 {
				unix.InotifyRmWatch(s.fd, uint32(wd))
			}
			s.dirWd = -1 // Watch adds it again when the directory is back
			return changeReplaced, true
		}
		// Our file, or a Kubernetes-style ..data symlink swap.
		if name != s.base && !strings.HasPrefix(name, "..") {
			return 0, false
		}
		switch {
		case mask&unix.IN_MODIFY != 0:
			return changeWrite, true
		case mask&unix.IN_CLOSE_WRITE != 0:
			return changeClosed, true
		case mask&unix.IN_ATTRIB != 0:
			return changeAttr, true
		case mask&unix.IN_CREATE != 0:
			return changeCreated, true
		}
		return changeReplaced, true
	}
	return 0, false
}

// Package safeio holds the few ways smgctl makes data durable, so that
// each is written and tested once: replacing a file atomically
// (WriteFile, Prepare), committing directory entries (SyncDir), flushing
// a file's data without its metadata (Datasync), and sharing one sync
// among concurrent callers (GroupCommit). chasquid's safeio is the model.
//
// The rules behind them (POSIX, and what Linux does on top):
//   - rename(2) within one file system is atomic: a reader sees the old
//     file or the new one, never a torn one;
//   - a file's fsync does not make its name durable: creating, renaming
//     or removing an entry survives a crash only once an fsync of its
//     directory that began after the change has returned.
package safeio

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces path with data so that a reader, or a restart after
// a crash, sees either the old file or the new one, never a torn one. An
// existing file's mode and owner are kept; perm applies to a new file. A
// symbolic link at path is followed, so the link survives and its target
// is replaced.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	p, err := Prepare(path, data, perm)
	if err != nil {
		return err
	}
	return p.Commit()
}

// Pending is a new version of a file, durable on disk under a temporary
// name but not yet in place. Splitting Prepare from Commit lets a caller
// record the change (the policy journal) after the new file is safely
// written and before it takes effect.
type Pending struct {
	tmp, path, dir string
}

// Prepare writes data to a temporary file in path's directory (so the
// rename stays within one file system) and fsyncs it. The temporary
// file's name starts with "." and contains ".tmp". On error nothing is
// left behind.
func Prepare(path string, data []byte, perm os.FileMode) (*Pending, error) {
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	uid, gid := -1, -1
	if fi, err := os.Stat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", path)
		}
		perm = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return nil, err
	}
	p := &Pending{tmp: tmp.Name(), path: path, dir: dir}
	fail := func(err error) (*Pending, error) {
		tmp.Close()
		os.Remove(p.tmp)
		return nil, err
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fail(err)
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		// Keep the owner an administrator gave the file (possible as
		// root); failing beats silently changing who owns it.
		if err := tmp.Chown(uid, gid); err != nil {
			return fail(fmt.Errorf("keep owner of %s: %w", path, err))
		}
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	// NFS and some FUSE file systems report write errors only at close.
	if err := tmp.Close(); err != nil {
		os.Remove(p.tmp)
		return nil, err
	}
	return p, nil
}

// Commit renames the new version into place and fsyncs the directory so
// the rename itself survives a crash.
func (p *Pending) Commit() error {
	if err := os.Rename(p.tmp, p.path); err != nil {
		os.Remove(p.tmp)
		return err
	}
	return SyncDir(p.dir)
}

// Abort discards the new version.
func (p *Pending) Abort() { os.Remove(p.tmp) }

// SyncDir fsyncs a directory, making the entries created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

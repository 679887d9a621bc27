package store

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFileAtomic replaces path with data so that a reader, or a restart
// after a crash, sees either the old file or the new one, never a torn
// one. An existing file's mode and owner are kept; perm applies to a new
// file. A symbolic link at path is followed, so the link survives and its
// target is replaced.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	p, err := prepare(path, data, perm)
	if err != nil {
		return err
	}
	return p.commit()
}

// pending is a new version of a file, durable on disk under a temporary
// name but not yet in place. Splitting prepare from commit lets the store
// journal a change after the new file is safely written and before it
// takes effect.
type pending struct {
	tmp, path, dir string
}

// prepare writes data to a temporary file in path's directory (so the
// rename stays within one file system, where POSIX rename(2) is atomic)
// and fsyncs it.
func prepare(path string, data []byte, perm os.FileMode) (*pending, error) {
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
	p := &pending{tmp: tmp.Name(), path: path, dir: dir}
	fail := func(err error) (*pending, error) {
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
		// root); failing beats silently changing who owns the policy.
		if err := tmp.Chown(uid, gid); err != nil {
			return fail(fmt.Errorf("keep owner of %s: %w", path, err))
		}
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(p.tmp)
		return nil, err
	}
	return p, nil
}

// commit renames the new version into place and fsyncs the directory so
// the rename itself survives a crash.
func (p *pending) commit() error {
	if err := os.Rename(p.tmp, p.path); err != nil {
		os.Remove(p.tmp)
		return err
	}
	return syncDir(p.dir)
}

// abort discards the new version.
func (p *pending) abort() { os.Remove(p.tmp) }

// syncDir makes a directory entry change (create, rename) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

//go:build !linux

package policywatch

import "errors"

// Elsewhere there is no portable "writer closed the file" event, so the
// watcher polls and waits for the file to be stable over two polls.
func newSource(string) (source, error) {
	return nil, errors.New("no inotify on this system")
}

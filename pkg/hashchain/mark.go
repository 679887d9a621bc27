package hashchain

import (
	"bytes"
	"encoding/json"
	"time"
)

// Marks are lines a chained file writes about itself, in the chain with
// its records (docs/audit.md, "Checkpoints"). Both the audit log and the
// policy journal end every write with a checkpoint, in the same write(2),
// so a file that ends with anything else lost its end, or was appended to
// by someone else, or its writer crashed mid-write and has not run since.
const (
	// Checkpoint: "the chain had Seq lines before me; prev is its head".
	Checkpoint = "checkpoint"
	// Repaired: the writer cut CutBytes bytes off the end of the file
	// (the rest of a write that failed, or the incomplete line a crash
	// left).
	Repaired = "log-repaired"
)

// Mark is a checkpoint or a repair line.
type Mark struct {
	Time  time.Time `json:"time"`
	Event string    `json:"event"`
	// Seq is the number of lines in the whole chain (every file of a
	// rotated log) before this one: the head it names is line Seq.
	Seq int64 `json:"seq"`
	// CutBytes (Repaired) is how many bytes were cut off the end.
	CutBytes int64 `json:"cut_bytes,omitempty"`
	// Uncovered (Checkpoint) counts lines the writer found after the last
	// checkpoint when it opened the file, and kept: a crash between a
	// batch's lines and its checkpoint, lines someone else appended, or a
	// file written before checkpoints existed.
	Uncovered int64  `json:"uncovered,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Prev      string `json:"prev"`
}

// IsMark says whether an event names a mark.
func IsMark(event string) bool { return event == Checkpoint || event == Repaired }

// ParseMark reads a line as a Mark; ok is false for anything else.
func ParseMark(line []byte) (m Mark, ok bool) {
	// Writers put the event right after the time; this skips decoding
	// every record when a whole file is scanned.
	if !bytes.Contains(line, []byte(`"event":"checkpoint"`)) && !bytes.Contains(line, []byte(`"event":"log-repaired"`)) {
		return Mark{}, false
	}
	if json.Unmarshal(line, &m) != nil || !IsMark(m.Event) {
		return Mark{}, false
	}
	return m, true
}

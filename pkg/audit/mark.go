package audit

import "github.com/smgctl/smgctl/pkg/hashchain"

// The log's own lines, in the chain with the records (hashchain.Mark).
const (
	// Checkpoint ends every batch, in the same write(2).
	Checkpoint Event = hashchain.Checkpoint
	// Repaired records that the relay cut bytes off the end of the live
	// file: the rest of a batch whose write failed (disk full), or the
	// incomplete line a crash left.
	Repaired Event = hashchain.Repaired
)

// IsMark says whether an event is one of the log's own lines rather than
// an outcome: reports, traces and metrics skip these.
func IsMark(e Event) bool { return hashchain.IsMark(string(e)) }

// Mark is a line the log writes about itself; decoded as a Record it has
// only Time, Event and Prev.
type Mark = hashchain.Mark

// ParseMark reads a line as a Mark; ok is false for anything else.
func ParseMark(line []byte) (Mark, bool) { return hashchain.ParseMark(line) }

package audit

import (
	"fmt"
	"time"

	"github.com/smgctl/smgctl/pkg/hashchain"
)

// Checkpoints make the end of the log evidence in itself (docs/audit.md,
// "Checkpoints"): every batch ends with a checkpoint line in the same
// write(2), so a log that ends with anything else lost its end or was
// appended to by someone else. The seal (seal.go) and an anchor kept off
// the host (`smgctl audit head`) extend that to cuts at a checkpoint.

// cutTornTail cuts the incomplete line a crash left at the end of the
// live file (frag bytes) and queues the record of the cut.
func (l *Log) cutTornTail(frag int, now time.Time) error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := l.f.Truncate(st.Size() - int64(frag)); err != nil {
		return fmt.Errorf("audit log: cutting an incomplete last line: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	l.log.Warn("audit log ended in an incomplete line (a write cut short); cut it off, recorded in the log", "path", l.path, "bytes", frag)
	l.marks = append(l.marks, Mark{Time: now.UTC(), Event: hashchain.Repaired, CutBytes: int64(frag),
		Reason: "at start: the log ended in an incomplete line, a write cut short by a crash"})
	return nil
}

// failedWrite is the reason of the record of cuts after failed writes.
const failedWrite = "writes failed part-way (e.g. no space left on device); what they wrote was cut off, and their batches are written again"

// finishCut cuts the live file back to l.cutTo after a failed write, and
// queues the record of the cut. Nothing is appended while a cut is
// pending: a record glued to a torn fragment would break the chain for
// good. Called with l.mu held.
func (l *Log) finishCut(now time.Time) error {
	if l.cutTo < 0 {
		return nil
	}
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	cut := st.Size() - l.cutTo
	if cut > 0 {
		if err := l.f.Truncate(l.cutTo); err != nil {
			return fmt.Errorf("audit log: cutting a failed write back to %d bytes: %w", l.cutTo, err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		l.log.Warn("cut a failed batch off the audit log; the cut is recorded in the log", "path", l.path, "bytes", cut)
		if n := len(l.marks); n > 0 && l.marks[n-1].Event == hashchain.Repaired && l.marks[n-1].Reason == failedWrite {
			// Retries during one outage: one record of all they cut.
			l.marks[n-1].CutBytes += cut
		} else {
			l.marks = append(l.marks, Mark{Time: now.UTC(), Event: hashchain.Repaired, CutBytes: cut, Reason: failedWrite})
		}
	}
	l.cutTo = -1
	return nil
}

// startCount finds how many lines the chain has (l.seq) from the last
// checkpoint, and queues a checkpoint for lines found after it: a batch
// whose checkpoint never made it to disk, lines appended by someone
// else, or a log written before checkpoints existed. They are kept (an
// audit log loses nothing it may need) and named in the checkpoint.
func (l *Log) startCount(now time.Time) error {
	st := l.state
	if st.CheckpointLine > 0 {
		l.seq = st.CheckpointSeq + 1 + (st.Lines - st.CheckpointLine)
	} else {
		base, legacy, err := l.countRotated()
		if err != nil {
			return err
		}
		l.seq = base + st.Lines
		if legacy && l.seq > 0 {
			l.marks = append(l.marks, Mark{Time: now.UTC(), Event: hashchain.Checkpoint, Uncovered: l.seq,
				Reason: "first checkpoint of a log written before checkpoints"})
			return nil
		}
	}
	if after := st.Lines - st.CheckpointLine; after > 0 {
		l.log.Error("the audit log has lines after its last checkpoint: a crash mid-write, or lines added by someone else; covering them with a checkpoint that names them",
			"path", l.path, "lines", after)
		l.marks = append(l.marks, Mark{Time: now.UTC(), Event: hashchain.Checkpoint, Uncovered: after,
			Reason: fmt.Sprintf("at start: %d lines after the last checkpoint (a crash mid-write, or added by someone else)", after)})
	}
	return nil
}

// countRotated counts the chain's lines in the rotated files, from the
// newest one's last checkpoint when it has one; legacy is true when no
// file has a checkpoint.
func (l *Log) countRotated() (n int64, legacy bool, err error) {
	rot, err := Rotated(l.path)
	if err != nil {
		return 0, false, err
	}
	for i := len(rot) - 1; i >= 0; i-- {
		st, err := ScanFile(rot[i], 0)
		if err != nil {
			return 0, false, err
		}
		if st.CheckpointLine > 0 {
			return n + st.CheckpointSeq + 1 + (st.Lines - st.CheckpointLine), false, nil
		}
		n += st.Lines
	}
	return n, true, nil
}

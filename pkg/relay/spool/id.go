package spool

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// Queue IDs are 16 characters of base32hex (RFC 4648 §7, "0-9A-V"): 56 bits
// of microseconds since the Unix epoch, then 24 random bits. base32hex keeps
// the sort order of the bytes, so sorting IDs as strings sorts messages by
// arrival, like Postfix's long queue IDs (enable_long_queue_ids), and the
// alphabet is safe as a file name everywhere.
const idLen = 16

var idEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// idClock hands out strictly increasing microsecond stamps, so two IDs from
// one Spool never tie even within one microsecond or across a clock step
// backwards.
type idClock struct {
	mu   sync.Mutex
	last uint64
}

func (c *idClock) next(now time.Time) uint64 {
	us := uint64(now.UnixMicro())
	c.mu.Lock()
	defer c.mu.Unlock()
	if us <= c.last {
		us = c.last + 1
	}
	c.last = us
	return us
}

func newID(c *idClock, now time.Time) string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], c.next(now)<<8) // top 56 bits → b[0:7]
	// The random part tells apart IDs made by different processes in the
	// same microsecond (a relay and, say, `smgctl sendtest`).
	if _, err := rand.Read(b[7:]); err != nil {
		panic(err) // crypto/rand never fails on Linux ≥ 3.17
	}
	return idEncoding.EncodeToString(b[:])
}

// ValidID reports whether id can name a spool file: 1–64 characters of
// [0-9A-Za-z]. It is what stops `smgctl queue show ../../etc/passwd`.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// IDTime returns the arrival time encoded in an ID made by NewID.
func IDTime(id string) (time.Time, error) {
	if len(id) != idLen {
		return time.Time{}, fmt.Errorf("spool: %q is not a generated queue ID", id)
	}
	b, err := idEncoding.DecodeString(id)
	if err != nil {
		return time.Time{}, fmt.Errorf("spool: %q is not a generated queue ID", id)
	}
	var w [8]byte
	copy(w[1:], b[:7])
	return time.UnixMicro(int64(binary.BigEndian.Uint64(w[:]))), nil
}

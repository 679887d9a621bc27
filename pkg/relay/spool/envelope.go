package spool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// RecipientState is where one recipient of a queued message stands. Only
// Pending is not final; a message is removed once no recipient is Pending.
type RecipientState uint8

const (
	Pending   RecipientState = iota // not yet delivered; retried at NextAttempt
	Delivered                       // the remote MTA accepted it (2xx after DATA)
	Bounced                         // failed permanently; a DSN was (or will be) sent
	Expired                         // the queue lifetime ran out (RFC 3463 4.4.7)
)

var stateNames = [...]string{Pending: "pending", Delivered: "delivered", Bounced: "bounced", Expired: "expired"}

func (s RecipientState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Final reports whether nothing more will be tried for the recipient.
func (s RecipientState) Final() bool { return s != Pending }

// MarshalText writes the state by name, so the envelope file is readable
// and a reordering of the constants cannot change the meaning of old files.
func (s RecipientState) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, fmt.Errorf("spool: unknown recipient state %d", uint8(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText parses a state name written by MarshalText.
func (s *RecipientState) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if string(b) == n {
			*s = RecipientState(i)
			return nil
		}
	}
	return fmt.Errorf("spool: unknown recipient state %q", b)
}

// Recipient is one forward-path of a queued message and its delivery state.
type Recipient struct {
	Address     string         `json:"address"`
	State       RecipientState `json:"state"`
	Attempts    int            `json:"attempts,omitempty"`
	LastReply   string         `json:"last_reply,omitempty"`  // last SMTP reply or diagnostic
	NextAttempt time.Time      `json:"next_attempt,omitzero"` // zero: now
	// Notify is the client's RFC 3461 §4.1 NOTIFY: nil when it sent
	// none (the default: failures and delays), ["NEVER"], or a subset
	// of SUCCESS, FAILURE and DELAY.
	Notify []string `json:"notify,omitempty"`
	// ORcpt is the RFC 3461 §4.2 ORCPT as addr-type and decoded
	// address ("rfc822;bob@partner.com"); "" when the client sent none.
	ORcpt string `json:"orcpt,omitempty"`
}

// Envelope is everything about a queued message except its content: the
// SMTP envelope (RFC 5321 §2.3.1) plus the delivery state of each recipient.
//
// On disk it is one JSON object, queue/<ID>.json, for example:
//
//	{
//	  "v": 1,
//	  "id": "0CT4H1P9VGA2K3QF",
//	  "from": "alice@example.com",
//	  "recipients": [
//	    {"address": "bob@partner.com", "state": "pending"},
//	    {"address": "carol@bank.example", "state": "bounced", "attempts": 1,
//	     "last_reply": "503 5.7.0 encryption too weak 0 less than 112"}
//	  ],
//	  "arrival": "2025-01-02T03:04:05.123456Z",
//	  "message_id": "<abc@example.com>",
//	  "size": 2048,
//	  "smtputf8": false,
//	  "body_8bit": false,
//	  "client_addr": "127.0.0.1",
//	  "client_helo": "mail.example.com"
//	}
//
// Optional fields (attempts, last_reply, next_attempt, notify, orcpt,
// delay_notified, dsn_of, dsn_ret, dsn_envid, requiretls, tls_required_no,
// held, message_id) are omitted when empty. "v" is the format version;
// a reader refuses versions it does not know rather than guess.
type Envelope struct {
	ID            string      `json:"id"`
	From          string      `json:"from"` // reverse-path; "" = null sender (a DSN): never bounced
	Recipients    []Recipient `json:"recipients"`
	Arrival       time.Time   `json:"arrival"`
	MessageID     string      `json:"message_id,omitempty"` // from the Message-ID header, for audit
	Size          int64       `json:"size"`                 // body bytes as stored; set by Put
	SMTPUTF8      bool        `json:"smtputf8"`             // RFC 6531: the client asked for SMTPUTF8
	Body8Bit      bool        `json:"body_8bit"`            // RFC 6152: BODY=8BITMIME
	ClientAddr    string      `json:"client_addr,omitempty"`
	ClientHelo    string      `json:"client_helo,omitempty"`
	DelayNotified bool        `json:"delay_notified,omitempty"` // a delayed DSN has been sent
	DSNOf         string      `json:"dsn_of,omitempty"`         // for DSNs: the queue ID they report on
	// DSNRet is the client's RFC 3461 §4.3 RET: "FULL", "HDRS" or ""
	// (none sent; the relay's DSNs then return the headers).
	DSNRet string `json:"dsn_ret,omitempty"`
	// DSNEnvID is the RFC 3461 §4.4 ENVID, xtext-decoded; "" when none.
	DSNEnvID string `json:"dsn_envid,omitempty"`
	// RequireTLS: the client sent MAIL FROM with REQUIRETLS (RFC 8689 §4.1)
	// over TLS.
	RequireTLS bool `json:"requiretls,omitempty"`
	// TLSRequiredNo: the message's header section says "TLS-Required:
	// No" (RFC 8689 §3): the sender lets MTA-STS and DANE failures pass
	// for this message (RFC 8689 §4.2.2); never a list entry. Never set
	// together with RequireTLS, which wins (RFC 8689 §4.1: the header is
	// then ignored). Older readers ignore the field.
	TLSRequiredNo bool `json:"tls_required_no,omitempty"`
	// Held: an administrator put the message on hold (smgctl queue hold,
	// Postfix's postsuper -h): no delivery attempt, no delayed DSN and no
	// expiry until it is released.
	Held bool `json:"held,omitempty"`
}

// formatVersion is the "v" of envelope files this code writes and reads.
const formatVersion = 1

// envelopeFile is the on-disk form: the envelope plus the format version.
type envelopeFile struct {
	V int `json:"v"`
	*Envelope
}

func marshalEnvelope(env *Envelope) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "<id@host>", not "\u003cid@host\u003e", for grep
	if err := enc.Encode(envelopeFile{V: formatVersion, Envelope: env}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func unmarshalEnvelope(b []byte) (*Envelope, error) {
	env := new(Envelope)
	f := envelopeFile{Envelope: env}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	if f.V != formatVersion {
		return nil, fmt.Errorf("envelope format version %d, want %d", f.V, formatVersion)
	}
	return env, nil
}

// Pending reports whether any recipient still waits for delivery.
func (e *Envelope) Pending() bool {
	for _, r := range e.Recipients {
		if !r.State.Final() {
			return true
		}
	}
	return false
}

// clone is a deep copy: the journal's index hands out copies, so a
// caller's changes reach the spool only through Update.
func (e *Envelope) clone() *Envelope {
	c := *e
	c.Recipients = slices.Clone(e.Recipients)
	return &c
}

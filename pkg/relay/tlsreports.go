package relay

import (
	"bytes"
	"crypto/x509"
	"path/filepath"

	"github.com/smgctl/smgctl/pkg/audit/tlsrpt"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	sender "github.com/smgctl/smgctl/pkg/relay/tlsrpt"
)

// newReportSender sets up the daily TLS-RPT reports (docs/tlsrpt.md):
// mailed ones go through the relay's own queue like any message, every
// sending is audited through the gate.
func (r *Relay) newReportSender(res *mx.Resolver, roots *x509.CertPool) (*sender.Sender, error) {
	host, org, contact := tlsrpt.Submitter(r.cfg.Hostname, r.cfg.TLSRPTOrganization, r.cfg.TLSRPTContact)
	return sender.New(sender.Config{
		AuditLog:     r.cfg.AuditLog,
		State:        filepath.Join(r.cfg.Spool, sender.StateFile),
		Submitter:    host,
		Organization: org,
		Contact:      contact,
		LookupTXT:    res.LookupTXT,
		IsNotFound:   mx.IsNotFound,
		Enqueue:      r.enqueueReport,
		Audit:        r.gate.Write,
		LookupAddrs:  res.LookupAddrs,
		RootCAs:      roots,
		MaxDelay:     r.cfg.tlsrptMaxDelay,
		Now:          r.cfg.tlsrptNow,
		Log:          r.log.With("part", "tlsrpt"),
	})
}

// enqueueReport queues a report message and wakes the runner.
func (r *Relay) enqueueReport(m *sender.Mail) error {
	env := &spool.Envelope{
		From:       m.From,
		Recipients: []spool.Recipient{{Address: m.To}},
		MessageID:  m.MessageID,
	}
	if err := r.spool.Put(env, bytes.NewReader(m.Bytes)); err != nil {
		return err
	}
	r.runner.Notify(env.ID)
	return nil
}

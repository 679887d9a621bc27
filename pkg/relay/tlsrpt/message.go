package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	report "github.com/smgctl/smgctl/pkg/audit/tlsrpt"
)

// Compress is the report's JSON, gzipped: what both delivery methods
// carry (RFC 8460 §5.2, application/tlsrpt+gzip).
func Compress(r report.Report) (gz, plain []byte, err error) {
	if plain, err = json.Marshal(r); err != nil {
		return nil, nil, err
	}
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(plain)
	if err := w.Close(); err != nil {
		return nil, nil, err
	}
	return b.Bytes(), plain, nil
}

// Filename is the RFC 8460 §5.1 name of the report file:
// sender!policy-domain!begin!end.json.gz (seconds since the epoch).
func Filename(r report.Report, submitter, domain string) string {
	return fmt.Sprintf("%s!%s!%d!%d.json.gz", submitter, domain, r.DateRange.Start.Unix(), r.DateRange.End.Unix())
}

// Mail is a report message, ready for the queue.
type Mail struct {
	From, To  string
	MessageID string // with angle brackets; starts with report.ReportMessageIDPrefix
	Bytes     []byte
}

// BuildMail builds the RFC 8460 §5.3 message of report r on domain to
// the mailbox to: multipart/report; report-type="tlsrpt" with a short
// text part and the gzipped report as application/tlsrpt+gzip, the
// TLS-Report-Domain and TLS-Report-Submitter headers, and the subject
// "Report Domain: D Submitter: S Report-ID: <ID>". It carries
// "TLS-Required: No": RFC 8460 §5.3 asks that reports be delivered
// despite TLS failures (RFC 8689 §5 is how a message says so).
func BuildMail(r report.Report, domain, submitter, from, to string, now time.Time) (*Mail, error) {
	gz, _, err := Compress(r)
	if err != nil {
		return nil, err
	}
	boundary := "tlsrpt-" + rand.Text()
	msgID := fmt.Sprintf("%s%s@%s>", report.ReportMessageIDPrefix, rand.Text(), submitter)
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", "<"+from+">")
	h("To", "<"+to+">")
	h("Date", now.UTC().Format(time.RFC1123Z))
	h("Subject", fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", domain, submitter, r.ReportID))
	h("Message-ID", msgID)
	h("TLS-Report-Domain", domain)
	h("TLS-Report-Submitter", submitter)
	h("TLS-Required", "No")
	h("Auto-Submitted", "auto-generated") // RFC 3834: no autoreplies
	h("MIME-Version", "1.0")
	h("Content-Type", fmt.Sprintf(`multipart/report; report-type="tlsrpt"; boundary="%s"`, boundary))
	b.WriteString("\r\n")
	fmt.Fprintf(&b, "--%s\r\n", boundary)
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	fmt.Fprintf(&b, "This is an aggregate TLS report (RFC 8460) from %s on the mail sent to\r\n%s between %s and %s (UTC). It is attached, gzipped.\r\n\r\n",
		submitter, domain, r.DateRange.Start.UTC().Format(time.RFC3339), r.DateRange.End.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "--%s\r\n", boundary)
	name := Filename(r, submitter, domain)
	fmt.Fprintf(&b, "Content-Type: application/tlsrpt+gzip; name=\"%s\"\r\n", name)
	b.WriteString("Content-Transfer-Encoding: base64\r\n")
	fmt.Fprintf(&b, "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n", name)
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return &Mail{From: from, To: to, MessageID: msgID, Bytes: b.Bytes()}, nil
}

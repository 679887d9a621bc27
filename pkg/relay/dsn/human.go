package dsn

import (
	"fmt"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// This file writes the report's first part, the one people read (RFC 6522
// §3). SPEC §4: it says in plain words why the message was not sent, whose
// decision that was — the gateway's own TLS policy, naming the entry, or
// the partner's server — and what the sender can do.

// humanText is the notification for r. full says the whole message is
// attached, not only its headers.
func humanText(r Report, host string, kind reportKind, full bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at host %s.\n\n", host)
	switch kind {
	case reportDelayed:
		b.WriteString("####################################################################\n")
		b.WriteString("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n")
		b.WriteString("####################################################################\n\n")
		b.WriteString("Your message has not been delivered yet to the recipients below.\n")
		b.WriteString("The gateway keeps trying; you will hear again only if it gives up.\n\n")
	case reportRelayed:
		b.WriteString("Your message was passed on to the recipients' mail servers below,\n")
		b.WriteString("as you asked to be told. Those servers do not offer delivery\n")
		b.WriteString("notifications, so this is the last confirmation you will get.\n\n")
	default:
		b.WriteString("I'm sorry to have to inform you that your message could not\n")
		b.WriteString("be delivered to one or more recipients. ")
		switch {
		case r.Redacted:
			b.WriteString("It is not attached, nor are its headers:\nit was sent with REQUIRETLS, and this report may travel where\nthe message could not.\n\n")
		case full:
			b.WriteString("It's attached below.\n\n")
		case r.TooLarge > 0:
			fmt.Fprintf(&b, "Only its headers are attached:\nthe message is larger than the %s this gateway returns.\n\n", sizeText(r.TooLarge))
		default:
			b.WriteString("Its headers are attached below.\n\n")
		}
	}
	for _, rc := range r.Recipients {
		fmt.Fprintf(&b, "<%s>:\n", plain(rc.Address))
		for _, l := range explain(rc) {
			if q, ok := strings.CutPrefix(l, quote); ok {
				// Replies and diagnostics are quoted whole, on one
				// line, so they can be searched for and copied.
				b.WriteString("    " + q + "\n")
				continue
			}
			b.WriteString(wrap(l, "    ", 72))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// quote marks a paragraph that is written on one line, unwrapped.
const quote = "\x00"

// explain says, in paragraphs, what happened to one recipient.
func explain(rc Recipient) []string {
	diag := plain(rc.Diagnostic.String())
	action := actionOf(rc)
	var out []string
	switch {
	case action == Relayed:
		s := "Passed on"
		if rc.RemoteMTA != "" {
			s += " to " + plain(rc.RemoteMTA)
		}
		out = append(out, s+", which does not offer delivery status notifications (DSN).")
	case rc.Policy != nil:
		out = append(out, policyWords(rc, action)...)
	case action == Failed && statusOf(rc) == smtpreply.StatusExpired:
		out = append(out, "The gateway kept trying until the message's time in the queue ran out, and has given up.")
		if rc.RemoteMTA != "" {
			out = append(out, fmt.Sprintf("The last reply, from the recipient's mail server %s, was:", plain(rc.RemoteMTA)))
		} else {
			out = append(out, "The last problem was:")
		}
		if diag != "" {
			out = append(out, quote+"    "+diag)
		}
		out = append(out, "What you can do: send the message again later, or reach the recipient another way.")
	case rc.RemoteMTA != "" && diag != "":
		if action == Delayed {
			out = append(out, fmt.Sprintf("The recipient's mail server %s asked the gateway to try again later. It said:", plain(rc.RemoteMTA)))
		} else {
			out = append(out, fmt.Sprintf("The recipient's mail server %s refused the message. It said:", plain(rc.RemoteMTA)))
		}
		out = append(out, quote+"    "+diag)
		if action == Failed {
			out = append(out, remoteAdvice(statusOf(rc)))
		}
	case diag != "":
		if action == Delayed {
			out = append(out, "The gateway could not deliver it yet. The last problem was:")
		} else {
			out = append(out, "The gateway could not deliver it:")
		}
		out = append(out, quote+"    "+diag)
		if action == Failed && statusOf(rc) == smtpreply.StatusRequireTLS {
			out = append(out, requireTLSAdvice)
		}
	default:
		out = append(out, string(action)+".")
	}
	if action == Delayed && !rc.WillRetryUntil.IsZero() {
		out = append(out, "The gateway will keep trying until "+rc.WillRetryUntil.UTC().Format(time.RFC1123)+".")
	}
	return out
}

// policyWords explains a refusal by the gateway's own TLS policy. The
// diagnostic is one of pkg/policy's three exact texts (SPEC §4); anything
// else is quoted as it is.
func policyWords(rc Recipient, action Action) []string {
	p := rc.Policy
	entry := "the gateway's TLS policy"
	if p.Entry != "" {
		entry = fmt.Sprintf("the gateway's TLS policy entry '%s'", plain(p.Entry))
		switch {
		case p.File != "" && p.Line > 0:
			entry += fmt.Sprintf(" (%s line %d)", plain(p.File), p.Line)
		case p.Line > 0:
			entry += fmt.Sprintf(" (policy line %d)", p.Line)
		}
	}
	server := "the recipient's mail server"
	if p.Host != "" {
		server += " " + plain(p.Host)
	}
	var need, got, advice string
	diag := plain(rc.Diagnostic.String())
	if words := publishedWords(rc, action, server, diag); words != nil {
		return words
	}
	// The diagnostic may come from an envelope on disk, so it is read
	// back with pkg/smtpreply's readers for its own texts.
	have, want, weak := smtpreply.ReadEncryptionTooWeak(diag)
	haveV, wantV, old := smtpreply.ReadProtocolTooOld(diag)
	reason, unverified := smtpreply.ReadCertificateNotVerified(diag)
	switch {
	case weak:
		need = fmt.Sprintf("requires an encrypted connection with at least %d-bit encryption", want)
		if have == 0 {
			got = server + " offered no encryption at all (no STARTTLS, or the encryption could not be set up)"
		} else {
			got = fmt.Sprintf("%s offered only %d-bit encryption", server, have)
		}
		advice = "ask the recipient's mail administrators to offer strong encryption (STARTTLS), or ask your own mail administrator whether the policy entry is right."
	case old:
		need = "requires " + wantV + " or newer"
		got = server + " offered only " + haveV
		advice = "ask the recipient's mail administrators to enable " + wantV + " or newer, or ask your own mail administrator whether the policy entry is right."
	case unverified:
		need = "requires a verified certificate for the recipient's mail server"
		got = server + "'s certificate could not be verified (" + reason + ")"
		advice = "ask the recipient's mail administrators to install a valid certificate for their mail server, or ask your own mail administrator whether the policy entry is right."
	default:
		need = "refused it"
		got = "the gateway's verdict was " + diag
		advice = "ask your mail administrator about the policy entry."
	}
	out := []string{fmt.Sprintf("Not sent: %s %s, and %s.", entry, need, got)}
	if action == Delayed {
		out = append(out, "The gateway itself has held the message back; it will try again in case that changes. This is the gateway's own policy decision, not a reply from the recipient's mail server, which has not received your message.")
	} else {
		out = append(out, "The gateway itself refused to send the message over such a connection. This is the gateway's own policy decision, not a reply from the recipient's mail server, which never received your message.")
		out = append(out, "What you can do: sending the message again will fail the same way until this changes; "+advice+" Use another way to reach the recipient if it is urgent.")
	}
	out = append(out, quote+"Diagnostic: "+diag)
	return out
}

// publishedWords explains a refusal by what the recipient's domain
// publishes, DANE or MTA-STS (docs/policy.md: their texts start "DANE: "
// and "MTA-STS: " after the codes); nil for any other diagnostic.
func publishedWords(rc Recipient, action Action, server, diag string) []string {
	var what string
	switch text := smtpreply.FromLine(diag).Text(); {
	case strings.HasPrefix(text, "DANE: "):
		what = "DANE records (DNSSEC-signed TLSA records) that require an encrypted connection to a mail server they authenticate"
	case strings.HasPrefix(text, "MTA-STS: "):
		what = "an MTA-STS policy that requires an encrypted connection (TLS 1.2 or newer, with a valid certificate) to the mail servers it lists"
	default:
		return nil
	}
	out := []string{fmt.Sprintf("Not sent: the recipient's domain publishes %s, and %s did not meet it.", what, server)}
	if action == Delayed {
		out = append(out, "The gateway has held the message back to keep it from being read or changed on the way; it will try again in case that changes. The recipient's mail server has not received your message.")
	} else {
		out = append(out, "The gateway kept trying until the message's time in the queue ran out, and has given up, rather than send it where it could be read or changed on the way. The recipient's mail server never received your message.")
		out = append(out, "What you can do: ask the recipient's mail administrators to fix the encryption of their mail server or the records they publish. Use another way to reach the recipient if it is urgent.")
	}
	return append(out, quote+"Diagnostic: "+diag)
}

// remoteAdvice is what a sender can do about a refusal by the recipient's
// server, by RFC 3463 subject.
func remoteAdvice(status string) string {
	switch {
	case status == smtpreply.StatusRequireTLS:
		return requireTLSAdvice
	case strings.HasPrefix(status, "5.1."):
		return "What you can do: check the recipient's address for mistakes, or ask the recipient for the right one."
	case strings.HasPrefix(status, "5.2.") || strings.HasPrefix(status, "5.3.4"):
		return "What you can do: if the message is large, send it smaller (fewer or smaller attachments); otherwise reach the recipient another way."
	case strings.HasPrefix(status, "5.7."):
		return "What you can do: the recipient's server refused it by its own rules; contact the recipient another way and pass on the reply above."
	}
	return "What you can do: contact the recipient another way and pass on the reply above."
}

// requireTLSAdvice explains a 5.7.30 return (RFC 8689): the sender asked
// for REQUIRETLS, and no hop could honour it.
const requireTLSAdvice = "The message was sent with REQUIRETLS: it may travel only over an encrypted connection to an authenticated server that offers REQUIRETLS, and no server on the way to the recipient did. What you can do: ask the recipient's mail administrators to offer REQUIRETLS, or send the message again without requiring it."

// plain makes a value one printable line for the text part.
func plain(s string) string { return strings.ToValidUTF8(oneLine(s), "?") }

// wrap breaks a paragraph into lines of at most width runes, each starting
// with indent; a word longer than a line stays whole.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(text) {
		if line != indent && len([]rune(line))+1+len([]rune(w)) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += w
	}
	if line != indent {
		b.WriteString(line + "\n")
	}
	return b.String()
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

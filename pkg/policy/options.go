package policy

import (
	"crypto/tls"
	"fmt"
	"strconv"
	"strings"
)

// Mode says what a matching entry does with a recipient.
type Mode uint8

const (
	// ModeEnforce: TLS meeting the requirement, or no delivery.
	ModeEnforce Mode = iota
	// ModeTesting: deliver as opportunistic, record every would-be bounce.
	ModeTesting
	// ModeOff: opportunistic; exempts the target from any broader entry.
	ModeOff
)

func (m Mode) String() string {
	switch m {
	case ModeEnforce:
		return "enforce"
	case ModeTesting:
		return "testing"
	case ModeOff:
		return "off"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// OnFail says what happens to a message when no MX meets the requirement.
type OnFail uint8

const (
	// OnFailBounce returns the message to its sender at once (Sendmail PERM+).
	OnFailBounce OnFail = iota
	// OnFailDefer retries until the queue lifetime ends (Sendmail TEMP+).
	OnFailDefer
	// OnFailRoute hands the message to Options.Route, another gateway
	// (S/MIME, secure portal), instead of bouncing (on-fail=route:HOST).
	// If the route fails too, it is judged as on-fail=bounce judges MX
	// hosts: refused → bounce, unreachable → defer (see DecideRoute).
	OnFailRoute
)

func (f OnFail) String() string {
	switch f {
	case OnFailDefer:
		return "defer"
	case OnFailRoute:
		return "route"
	}
	return "bounce"
}

// Verify says how much the peer's certificate must prove.
type Verify uint8

const (
	// VerifyNone accepts any certificate: encryption only, as Sendmail ENCR.
	VerifyNone Verify = iota
	// VerifyCert requires a chain to a trusted root that names the MX host.
	VerifyCert
	// VerifyDANE requires DANE authentication (RFC 7672 §2.2): a
	// DNSSEC-signed MX and TLSA, and a certificate matching a usable
	// TLSA record. Without one, no delivery. Postfix's dane-only.
	VerifyDANE
)

func (v Verify) String() string {
	switch v {
	case VerifyCert:
		return "cert"
	case VerifyDANE:
		return "dane"
	}
	return "none"
}

// Defaults of every option (SPEC §2).
const (
	DefaultBits   = 112 // RFC 9325's floor: 3DES strength
	DefaultMinTLS = tls.VersionTLS10
)

// Options is what an entry requires of the connection.
type Options struct {
	Bits   int    // minimum effective cipher strength, 1–256
	MinTLS uint16 // minimum protocol version, a crypto/tls Version constant
	Verify Verify
	Mode   Mode
	OnFail OnFail
	// Route is the hand-off gateway when OnFail is OnFailRoute; zero
	// otherwise.
	Route Route
}

// DefaultOptions is what an entry without options requires.
func DefaultOptions() Options {
	return Options{Bits: DefaultBits, MinTLS: DefaultMinTLS}
}

// optionKeys is the canonical order options are written in.
var optionKeys = []string{"bits", "min-tls", "verify", "mode", "on-fail"}

// Set parses one key=value option into o.
func (o *Options) Set(key, value string) error {
	switch key {
	case "bits":
		n, err := strconv.Atoi(value)
		// Digits only, no sign or leading zero: one spelling per value.
		if err != nil || n < 1 || n > 256 || value[0] < '1' || value[0] > '9' {
			return fmt.Errorf("bits=%q: want a whole number from 1 to 256", value)
		}
		o.Bits = n
	case "min-tls":
		v, ok := ParseVersion(value)
		if !ok {
			return fmt.Errorf("min-tls=%q: want 1.0, 1.1, 1.2 or 1.3", value)
		}
		o.MinTLS = v
	case "verify":
		switch value {
		case "none":
			o.Verify = VerifyNone
		case "cert":
			o.Verify = VerifyCert
		case "dane":
			o.Verify = VerifyDANE
		default:
			return fmt.Errorf("verify=%q: want none, cert or dane", value)
		}
	case "mode":
		switch value {
		case "enforce":
			o.Mode = ModeEnforce
		case "testing":
			o.Mode = ModeTesting
		case "off":
			o.Mode = ModeOff
		default:
			return fmt.Errorf("mode=%q: want enforce, testing or off", value)
		}
	case "on-fail":
		o.Route = Route{}
		switch value {
		case "bounce":
			o.OnFail = OnFailBounce
		case "defer":
			o.OnFail = OnFailDefer
		default:
			spec, ok := strings.CutPrefix(value, "route:")
			if !ok {
				return fmt.Errorf("on-fail=%q: want bounce, defer or route:HOST[:PORT]", value)
			}
			r, err := ParseRoute(spec)
			if err != nil {
				return fmt.Errorf("on-fail=%q: %v", value, err)
			}
			o.OnFail, o.Route = OnFailRoute, r
		}
	default:
		return fmt.Errorf("unknown option %q (known: %s)", key, strings.Join(optionKeys, ", "))
	}
	return nil
}

// Get returns the option's value as written in a policy file.
func (o Options) Get(key string) string {
	switch key {
	case "bits":
		return strconv.Itoa(o.Bits)
	case "min-tls":
		return VersionNumber(VersionName(o.MinTLS))
	case "verify":
		return o.Verify.String()
	case "mode":
		return o.Mode.String()
	case "on-fail":
		if o.OnFail == OnFailRoute {
			return "route:" + o.Route.String()
		}
		return o.OnFail.String()
	}
	return ""
}

// String writes only the options that differ from the defaults, in
// canonical order, as they appear in a policy file.
func (o Options) String() string {
	def := DefaultOptions()
	var b strings.Builder
	for _, k := range optionKeys {
		if v := o.Get(k); v != def.Get(k) {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(k + "=" + v)
		}
	}
	return b.String()
}

// Map returns every option, defaults included, for JSON output.
func (o Options) Map() map[string]string {
	m := make(map[string]string, len(optionKeys))
	for _, k := range optionKeys {
		m[k] = o.Get(k)
	}
	return m
}

// OptionKeys lists the option names in canonical order.
func OptionKeys() []string { return append([]string(nil), optionKeys...) }

// ParseVersion reads "1.0".."1.3" (also "TLSv1.2" and "TLS1.2").
func ParseVersion(s string) (uint16, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "TLSv"), "TLS")
	switch s {
	case "1.0", "1":
		return tls.VersionTLS10, true
	case "1.1":
		return tls.VersionTLS11, true
	case "1.2":
		return tls.VersionTLS12, true
	case "1.3":
		return tls.VersionTLS13, true
	}
	return 0, false
}

// VersionNumber turns a version name as VersionName writes it
// ("TLSv1.2") into the form of a policy file and of smgctl's JSON
// ("1.2"). Other names ("none", "SSLv3") are kept.
func VersionNumber(name string) string { return strings.TrimPrefix(name, "TLSv") }

// VersionLabel is a protocol version named as logs and tables name it
// ("TLSv1.2"), written to JSON as the policy file writes it ("1.2").
type VersionLabel string

// MarshalText writes the JSON form.
func (v VersionLabel) MarshalText() ([]byte, error) { return []byte(VersionNumber(string(v))), nil }

// VersionName names a protocol version as OpenSSL and Postfix logs do.
func VersionName(v uint16) string {
	switch v {
	case 0:
		return "none"
	case 0x0300:
		return "SSLv3"
	case tls.VersionTLS10:
		return "TLSv1.0"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

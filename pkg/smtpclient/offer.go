package smtpclient

import "crypto/tls"

// RelayOffer returns a fresh copy of the relay's TLS offer, the one
// definition of it: StartTLS builds its config from it, and the deep
// probe (pkg/probe/deep) simulates "what smgctl's relay would negotiate"
// with it, so the two cannot drift.
//
// The offer is wide on purpose (SPEC §4): TLS 1.0–1.3 and every suite Go
// implements, so a legacy peer that only speaks 3DES or RSA key exchange
// still gets encryption instead of clear text, and pkg/policy then judges
// what was negotiated. Curves are Go's defaults (CurvePreferences nil).
// Session tickets are off: Microsoft's servers break on Go's tickets, and
// a probe wants a full handshake anyway.
//
// The template carries no ServerName and no verification settings; the
// caller sets those for its peer.
func RelayOffer() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS10,
		MaxVersion:             tls.VersionTLS13,
		CipherSuites:           WideCipherSuites(),
		SessionTicketsDisabled: true,
	}
}

// WideCipherSuites is every TLS 1.0–1.2 suite Go implements, secure ones
// first: the suite list of RelayOffer.
func WideCipherSuites() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ids = append(ids, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		ids = append(ids, s.ID)
	}
	return ids
}

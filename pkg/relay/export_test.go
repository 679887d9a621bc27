package relay

import "time"

// SetTLSRPTMaxDelay shortens the random delay before the relay's TLS-RPT
// pass, so an end-to-end test need not wait minutes.
func SetTLSRPTMaxDelay(c *Config, d time.Duration) { c.tlsrptMaxDelay = d }

// SetTLSRPTNow sets the clock of the relay's TLS-RPT sender, so an
// end-to-end test can have the day of its own deliveries reported.
func SetTLSRPTNow(c *Config, now func() time.Time) { c.tlsrptNow = now }

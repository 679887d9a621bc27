package relay

import "time"

// SetTLSRPTMaxDelay shortens the random delay before the relay's TLS-RPT
// pass, so an end-to-end test need not wait minutes.
func SetTLSRPTMaxDelay(c *Config, d time.Duration) { c.tlsrptMaxDelay = d }

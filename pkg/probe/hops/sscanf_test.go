package hops

import "fmt"

// fmtSscanf reads openssl's "0xC0,0x30" ID form.
func fmtSscanf(s string, hi, lo *uint16) (int, error) {
	return fmt.Sscanf(s, "0x%02X,0x%02X", hi, lo)
}

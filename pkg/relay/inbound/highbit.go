package inbound

// hasHighBit reports whether any octet of p is ≥ 0x80, eight at a time.
func hasHighBit(p []byte) bool {
	for len(p) >= 8 {
		w := uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24 |
			uint64(p[4])<<32 | uint64(p[5])<<40 | uint64(p[6])<<48 | uint64(p[7])<<56
		if w&0x8080808080808080 != 0 {
			return true
		}
		p = p[8:]
	}
	for _, b := range p {
		if b >= 0x80 {
			return true
		}
	}
	return false
}

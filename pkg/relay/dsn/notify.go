package dsn

import "strings"

// Wants reports whether a recipient's RFC 3461 §4.1 NOTIFY asks for a
// report with action a. nil (no NOTIFY given) is the default: failures
// and delays, never success (§4.1: "the default ... FAILURE,DELAY").
// "NEVER" asks for none.
func Wants(notify []string, a Action) bool {
	if notify == nil {
		return a == Failed || a == Delayed
	}
	want := map[Action]string{Failed: "FAILURE", Delayed: "DELAY", Relayed: "SUCCESS"}[a]
	for _, n := range notify {
		if strings.EqualFold(n, "NEVER") {
			return false
		}
	}
	for _, n := range notify {
		if want != "" && strings.EqualFold(n, want) {
			return true
		}
	}
	return false
}

// Command smgctl enforces and audits TLS for outbound mail: the relay, the
// probe of partners' MX hosts, and the TLS policy list.
package main

import (
	"os"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

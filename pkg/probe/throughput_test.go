package probe

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
)

// TestThroughput is bench/probe.sh's measurement, not a unit test: it
// probes SMGCTL_BENCH_DOMAINS (default 1000) domains served by the
// in-process DNS, all pointing at four local Postfix MX instances, and
// then runs posttls-finger against the same hops for comparison. It only
// runs when SMGCTL_BENCH=1.
func TestThroughput(t *testing.T) {
	if os.Getenv("SMGCTL_BENCH") != "1" {
		t.Skip("set SMGCTL_BENCH=1 (bench/probe.sh) to measure probe throughput")
	}
	testpeer.RequirePostfix(t)
	finger := testpeer.RequireBinary(t, "posttls-finger")
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("SMGCTL_BENCH_DOMAINS")); err == nil && v > 0 {
		n = v
	}
	ca := testpeer.NewCA(t)
	var mxs []*testpeer.Postfix
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			pf := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: ca,
				Main: map[string]string{"default_process_limit": "200", "smtpd_client_connection_rate_limit": "0", "smtpd_client_connection_count_limit": "0"}})
			mu.Lock()
			mxs = append(mxs, pf)
			mu.Unlock()
		})
	}
	wg.Wait()
	d := testpeer.StartDNS(t)
	for _, pf := range mxs {
		d.AddA(pf.Hostname, pf.IP.String())
	}
	targets := make([]string, n)
	for i := range n {
		dom := fmt.Sprintf("d%04d.bench.test", i)
		targets[i] = dom
		d.AddMX(dom, 10, mxs[i%len(mxs)].Hostname)
	}
	res, err := mx.NewResolver(d.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Resolver: res, Timeout: 10 * time.Second, Concurrency: 32, HeloName: "bench.test", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	reports := p.Probe(context.Background(), targets)
	took := time.Since(start)
	pass := 0
	for _, r := range reports {
		if r.Pass {
			pass++
		}
	}
	fmt.Printf("smgctl probe: %d domains (%d pass) in %v = %.0f domains/s\n", n, pass, took.Round(time.Millisecond), float64(n)/took.Seconds())
	if pass != n {
		t.Errorf("%d of %d domains failed", n-pass, n)
	}

	// posttls-finger on the same hops, 32 at a time. It resolves through
	// glibc (port 53 only), so it is given the MX address directly; the
	// probe above did the DNS work as well.
	start = time.Now()
	sem := make(chan struct{}, 32)
	var failed int
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pf := mxs[i%len(mxs)]
			cmd := exec.Command(finger, "-c", "-l", "may", "["+pf.IP.String()+"]:25")
			// posttls-finger reads main.cf; any instance's will do.
			cmd.Env = append(os.Environ(), "MAIL_CONFIG="+pf.ConfDir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				mu.Lock()
				failed++
				if failed == 1 {
					t.Logf("posttls-finger: %v\n%s", err, out)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	ftook := time.Since(start)
	fmt.Printf("posttls-finger: %d hops (%d failed) in %v = %.0f hops/s\n", n, failed, ftook.Round(time.Millisecond), float64(n)/ftook.Seconds())
}

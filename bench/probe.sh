#!/bin/sh
# Probe throughput: 1,000 domains (SMGCTL_BENCH_DOMAINS) served by an
# in-process DNS server, pointing at four local Postfix MX instances, probed
# by pkg/probe with concurrency 32; then posttls-finger against the same hops
# in the same run for comparison. Needs root, postfix and posttls-finger.
# Target: <= 30 s for 1,000 domains on 2 cores.
set -eu
cd "$(dirname "$0")/.."
SMGCTL_BENCH=1 exec go test -count=1 -run '^TestThroughput$' -v ./pkg/probe/ 2>&1 |
	grep -E '^(smgctl probe|posttls-finger|--- |ok|FAIL|panic)|realpeer|throughput_test'

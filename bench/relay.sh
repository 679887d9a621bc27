#!/usr/bin/env bash
# bench/relay.sh — Postfix vs smgctl relay, same load, same TLS sink.
#
# In one run, Postfix's smtp-source pushes the same messages into
#   (a) a Postfix relay at its fastest TLS setting: smtp_tls_policy_maps
#       "encrypt" for the sink, smtp_tls_connection_reuse = yes (tlsproxy);
#   (b) smgctl relay (built from this repo) with the sink domain on its
#       policy list (encrypt: TLS required, judged by policy.Evaluate);
# both routing bench.test statically to one TLS sink, a Postfix instance
# that discards every message after accepting it (header_checks
# /^Received:/ DISCARD). Throughput is end to end: from the first
# submission to the sink having received all (one "discard" line per
# message in its maillog). Then 1,000 concurrent inbound sessions are held
# against smgctl and its RSS is read.
#
#   sudo bench/relay.sh                 # 20 sessions, 5,000 messages per size
#   sudo N=500 bench/relay.sh           # quick run
#   env: N (messages per run), SESSIONS, SIZE (small body bytes, default
#        1000; the second size is always 100 KB), HOLD (sessions to hold,
#        default 1000), NET (first three octets of the loopback /24 to
#        use, default 127.88.1), SINK_DISK=1 (keep the sink's queue on
#        disk rather than a tmpfs; it then limits both relays).
#   PUBLISHED=1: bench.test is published instead of routed: a DNSSEC-signed
#        zone (ldns-signzone, nsd, validating unbound) with MX, A and a
#        DANE-EE TLSA record for the sink, and an MTA-STS enforce policy
#        served over HTTPS (openssl s_server -WWW, certificate from the
#        script's CA). Two smgctl relays deliver by MX through that
#        resolver, one with published policies on (b) and one off (c,
#        --published-policies=false); the first message into each gives the
#        cold first-delivery latency. The Postfix relay still routes
#        statically (no DANE there). Needs also nsd, unbound, ldns-keygen,
#        ldns-signzone, drill.
#
# Needs root (Postfix instances, port 25 on loopback), postfix,
# smtp-source, openssl and go. Only 127.x addresses are used; everything
# started is stopped on exit (trap), by PID or by "postfix -c DIR stop".
set -euo pipefail

N=${N:-5000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-1000}
BIG=102400
HOLD=${HOLD:-1000}
NET=${NET:-127.88.1}
SINK_IP=$NET.1
PFR_IP=$NET.2
SMG_IP=$NET.3
SMGOFF_IP=$NET.4 # PUBLISHED=1: smgctl with published policies off
NSD_IP=$NET.5
UNBOUND_IP=$NET.6
STS_IP=$NET.7
DOMAIN=bench.test
REPO=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "relay.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (Postfix instances listen on port 25)"
for t in postfix postconf smtp-source openssl go; do
	command -v "$t" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$t" >/dev/null || die "$t not installed"
done
export PATH=$PATH:/usr/sbin:/sbin
if [[ -n ${PUBLISHED:-} ]]; then
	for t in nsd unbound ldns-keygen ldns-signzone drill; do
		command -v "$t" >/dev/null || die "$t not installed (PUBLISHED=1)"
	done
fi
[[ $NET == 127.* ]] || die "NET must be inside 127.0.0.0/8"
for ip in $SINK_IP $PFR_IP $SMG_IP; do
	if (exec 3<>/dev/tcp/$ip/25) 2>/dev/null; then die "$ip:25 is in use; pick another NET"; fi
done

WORK=$(mktemp -d /tmp/smgbench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
INSTANCES=()
MOUNTS=()
cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	for d in "${INSTANCES[@]}"; do postfix -c "$d/conf" stop >/dev/null 2>&1; done
	for m in "${MOUNTS[@]}"; do umount -l "$m"; done
	if [[ -z ${KEEP:-} ]]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT INT TERM

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# --- test CA and the sink's certificate --------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=bench-ca -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=sink.bench.test \
	-keyout "$WORK/sink.key" -out "$WORK/sink.csr" 2>/dev/null
printf 'subjectAltName=DNS:sink.bench.test,IP:%s\n' "$SINK_IP" >"$WORK/san.ext"
openssl x509 -req -in "$WORK/sink.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
	-days 2 -extfile "$WORK/san.ext" -out "$WORK/sink.crt" 2>/dev/null

# --- Postfix instances (the layout internal/testpeer/postfix.go uses) --------
# mkpostfix NAME IP MAIN-EXTRA MASTER-EXTRA
mkpostfix() {
	local d=$WORK/$1 ip=$2
	local q=$d/queue
	mkdir -p "$q"
	# The sink is the measuring instrument, not a system under test: it
	# discards every message, yet its cleanup still creates and deletes a
	# queue file per message, and on this ext4 that capped it at ~700
	# msgs/s, below what smgctl delivers. Its queue lives in RAM unless
	# SINK_DISK=1. Both relays keep theirs on disk.
	if [[ $1 == sink && -z ${SINK_DISK:-} ]]; then
		mount -t tmpfs -o size=1g,mode=755 tmpfs "$q"
		MOUNTS+=("$q")
	fi
	mkdir -p "$d/conf" "$q/pid" "$d/data"
	for s in active bounce corrupt defer deferred flush hold incoming private saved trace; do
		install -d -m 700 -o postfix -g root "$q/$s"
	done
	install -d -m 730 -o postfix -g postdrop "$q/maildrop"
	install -d -m 710 -o postfix -g postdrop "$q/public"
	chown postfix:root "$d/data"; chmod 700 "$d/data"
	: >"$q/quick-start" # skip postfix-script's slow integrity checks
	cat >"$d/conf/main.cf" <<-EOF
		compatibility_level = 3.6
		queue_directory = $q
		data_directory = $d/data
		maillog_file = $d/maillog
		maillog_file_prefixes = $d
		myhostname = $1.bench.test
		mydomain = bench.test
		myorigin = \$myhostname
		mydestination =
		local_recipient_maps =
		alias_maps =
		alias_database =
		biff = no
		append_dot_mydomain = no
		inet_interfaces = 127.0.0.1
		inet_protocols = ipv4
		smtpd_peername_lookup = no
		in_flow_delay = 0
		smtpd_error_sleep_time = 0
		queue_run_delay = 1s
		minimal_backoff_time = 1s
		maximal_backoff_time = 10s
		mynetworks = 127.0.0.0/8
		default_transport = error:5.7.1 bench: no outbound delivery
		relay_transport = error:5.7.1 bench: no outbound delivery
		$3
	EOF
	{
		echo "$ip:25 inet n - n - - smtpd"
		cat <<-'EOF'
			pickup    unix  n - n 60    1 pickup
			cleanup   unix  n - n -     0 cleanup
			qmgr      unix  n - n 300   1 qmgr
			tlsmgr    unix  - - n 1000? 1 tlsmgr
			rewrite   unix  - - n -     - trivial-rewrite
			bounce    unix  - - n -     0 bounce
			defer     unix  - - n -     0 bounce
			trace     unix  - - n -     0 bounce
			verify    unix  - - n -     1 verify
			flush     unix  n - n 1000? 0 flush
			proxymap  unix  - - n -     - proxymap
			proxywrite unix - - n -     1 proxymap
			smtp      unix  - - n -     - smtp
			relay     unix  - - n -     - smtp
			showq     unix  n - n -     - showq
			error     unix  - - n -     - error
			retry     unix  - - n -     - error
			discard   unix  - - n -     - discard
			anvil     unix  - - n -     1 anvil
			scache    unix  - - n -     1 scache
			postlog   unix-dgram n - n - 1 postlogd
		EOF
		echo "$4"
	} >"$d/conf/master.cf"
	touch -d '-1 min' "$d/conf"/* # postfix sleeps while main.cf is younger than ~1s
	postfix -c "$d/conf" start >/dev/null 2>&1 || { postfix -c "$d/conf" check; cat "$d/maillog" 2>/dev/null; die "postfix $1 did not start"; }
	INSTANCES+=("$d")
	for _ in $(seq 300); do
		if (exec 3<>/dev/tcp/$ip/25) 2>/dev/null; then return; fi
		sleep 0.05
	done
	die "postfix $1 not listening on $ip:25"
}

# The sink: TLS 1.2+ with the CA's certificate; accepts for $DOMAIN and
# discards. Our own smtpd adds a Received: header to every message, and
# DISCARD acts once per message (the first match), so the maillog has
# exactly one "discard:" line per message received — checked below.
printf '/^Received:/ DISCARD bench sink\n' >"$WORK/header_checks"
cat "$WORK/sink.key" "$WORK/sink.crt" >"$WORK/sink-chain.pem"
mkpostfix sink "$SINK_IP" "
smtpd_tls_security_level = may
smtpd_tls_chain_files = $WORK/sink-chain.pem
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_loglevel = 1
header_checks = regexp:$WORK/header_checks
relay_domains = $DOMAIN
relay_transport = discard:bench-sink
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 200" ""

# (a) the Postfix relay, encrypt + connection reuse through tlsproxy.
printf '[%s]:25 encrypt\n%s encrypt\n' "$SINK_IP" "$DOMAIN" >"$WORK/tls_policy"
printf '%s smtp:[%s]:25\n' "$DOMAIN" "$SINK_IP" >"$WORK/transport"
mkpostfix pfrelay "$PFR_IP" "
relay_domains = $DOMAIN
transport_maps = texthash:$WORK/transport
smtp_tls_security_level = may
smtp_tls_policy_maps = texthash:$WORK/tls_policy
smtp_tls_connection_reuse = yes
smtp_tls_loglevel = 0
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0" \
	"tlsproxy  unix  - - n -     0 tlsproxy"

# (b) smgctl relay.
# --- PUBLISHED=1: bench.test in signed DNS, DANE-EE and MTA-STS enforce ---
# The recipe of internal/testpeer/dnssec.go and mtasts.go: nsd serves the
# zone signed with ldns-signzone, unbound validates it (trust anchor: the
# KSK's DS), the MX is the sink under its certificate's name.
publish() {
	local z=$WORK/dns
	mkdir -p "$z" "$WORK/sts/.well-known"
	local tlsa
	tlsa=$(openssl x509 -in "$WORK/sink.crt" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)
	cat >"$z/$DOMAIN.zone" <<-EOF
		\$ORIGIN $DOMAIN.
		\$TTL 300
		@ IN SOA ns.bench-auth. hostmaster.$DOMAIN. 1 3600 600 86400 300
		@ IN NS ns.bench-auth.
		@ IN MX 10 sink
		sink IN A $SINK_IP
		_25._tcp.sink IN TLSA 3 1 1 $tlsa
		_mta-sts IN TXT "v=STSv1; id=bench1"
		mta-sts IN A $STS_IP
	EOF
	local ksk zsk
	ksk=$(cd "$z" && ldns-keygen -a ECDSAP256SHA256 -k "$DOMAIN")
	zsk=$(cd "$z" && ldns-keygen -a ECDSAP256SHA256 "$DOMAIN")
	(cd "$z" && ldns-signzone -i "$(date -u -d '-1 hour' +%Y%m%d%H%M%S)" -e "$(date -u -d '+2 days' +%Y%m%d%H%M%S)" \
		-o "$DOMAIN" "$DOMAIN.zone" "$ksk" "$zsk") || die "ldns-signzone failed"
	cat >"$z/nsd.conf" <<-EOF
		server:
		  ip-address: $NSD_IP
		  port: 53
		  do-ip6: no
		  server-count: 1
		  username: ""
		  chroot: ""
		  database: ""
		  zonesdir: "$z"
		  zonelistfile: "$z/zone.list"
		  xfrdfile: "$z/xfrd.state"
		  xfrdir: "$z"
		  pidfile: "$z/nsd.pid"
		  logfile: "$z/nsd.log"
		remote-control:
		  control-enable: no
		zone:
		  name: "$DOMAIN"
		  zonefile: "$z/$DOMAIN.zone.signed"
	EOF
	cat >"$z/unbound.conf" <<-EOF
		server:
		  interface: $UNBOUND_IP
		  port: 53
		  do-ip6: no
		  num-threads: 1
		  username: ""
		  chroot: ""
		  directory: "$z"
		  pidfile: "$z/unbound.pid"
		  logfile: "$z/unbound.log"
		  use-syslog: no
		  do-daemonize: no
		  access-control: 127.0.0.0/8 allow
		  do-not-query-localhost: no
		  module-config: "validator iterator"
		  local-zone: "test." nodefault
		  trust-anchor-file: "$z/$ksk.ds"
		remote-control:
		  control-enable: no
		stub-zone:
		  name: "."
		  stub-addr: $NSD_IP
		stub-zone:
		  name: "$DOMAIN"
		  stub-addr: $NSD_IP
	EOF
	nsd -d -c "$z/nsd.conf" 2>"$z/nsd.err" &
	PIDS+=($!)
	unbound -d -c "$z/unbound.conf" 2>"$z/unbound.err" &
	PIDS+=($!)

	# The MTA-STS policy host: mta-sts.bench.test on $STS_IP:443.
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=mta-sts.$DOMAIN" \
		-keyout "$WORK/sts.key" -out "$WORK/sts.csr" 2>/dev/null
	printf 'subjectAltName=DNS:mta-sts.%s\n' "$DOMAIN" >"$WORK/sts.ext"
	openssl x509 -req -in "$WORK/sts.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
		-days 2 -extfile "$WORK/sts.ext" -out "$WORK/sts.crt" 2>/dev/null
	printf 'version: STSv1\r\nmode: enforce\r\nmx: sink.%s\r\nmax_age: 86400\r\n' "$DOMAIN" >"$WORK/sts/.well-known/mta-sts.txt"
	(cd "$WORK/sts" && exec openssl s_server -quiet -WWW -accept "$STS_IP:443" -cert "$WORK/sts.crt" -key "$WORK/sts.key") >"$WORK/sts.log" 2>&1 &
	PIDS+=($!)

	local ok=
	for _ in $(seq 100); do
		if drill -D @"$UNBOUND_IP" "_25._tcp.sink.$DOMAIN" TLSA 2>/dev/null | grep -q 'flags:.* ad'; then ok=1; break; fi
		sleep 0.1
	done
	[[ -n $ok ]] || { cat "$z"/*.err "$z"/*.log 2>/dev/null; die "unbound does not validate $DOMAIN"; }
	log "published $DOMAIN: signed MX/A/TLSA (resolver $UNBOUND_IP), MTA-STS enforce on $STS_IP:443"
}
if [[ -n ${PUBLISHED:-} ]]; then publish; fi

log "building smgctl and holdsessions"
(cd "$REPO" && go build -o "$WORK/smgctl" ./cmd/smgctl && go build -o "$WORK/holdsessions" ./bench/holdsessions)
printf '%s\n' "$DOMAIN" >"$WORK/policy.conf"
# startsmgctl NAME IP ARGS...: an smgctl relay on IP:2525; its PID in $STARTED.
startsmgctl() {
	local name=$1 ip=$2
	shift 2
	"$WORK/smgctl" relay --listen "$ip:2525" --hostname "$name.bench.test" \
		--spool "$WORK/$name-spool" --audit-log "$WORK/$name-audit.log" --policy "$WORK/policy.conf" \
		--ca-file "$WORK/ca.pem" --admin "$ip:9025" \
		--max-connections $((HOLD + 100)) --log-level warn "$@" 2>"$WORK/$name.log" &
	STARTED=$!
	PIDS+=("$STARTED")
	for _ in $(seq 300); do
		if (exec 3<>/dev/tcp/$ip/2525) 2>/dev/null; then return; fi
		kill -0 "$STARTED" 2>/dev/null || { cat "$WORK/$name.log"; die "smgctl relay $name exited"; }
		sleep 0.05
	done
	die "smgctl relay $name not listening on $ip:2525"
}
if [[ -n ${PUBLISHED:-} ]]; then
	# Delivery by MX through the validating resolver, no route.
	startsmgctl smgctl "$SMG_IP" --resolver "$UNBOUND_IP:53"
	SMG_PID=$STARTED
	startsmgctl smgoff "$SMGOFF_IP" --resolver "$UNBOUND_IP:53" --published-policies=false
	SMGOFF_PID=$STARTED
else
	startsmgctl smgctl "$SMG_IP" --route "$DOMAIN=$SINK_IP:25"
	SMG_PID=$STARTED
fi

tlssessions() { grep -c 'TLS connection established from' "$WORK/sink/maillog" 2>/dev/null || true; }
# cputicks [PID]: an smgctl's user+system CPU so far, in clock ticks.
cputicks() { awk '{ print $14 + $15 }' "/proc/${1:-$SMG_PID}/stat"; }

# pfcputicks: the Postfix relay's CPU so far, every process of it: the
# master's own and that of the children it reaped (cutime, cstime), plus
# each live child's (all of Postfix's daemons are the master's children;
# a child that exits between two readings moves from one sum to the
# other, so differences stay right).
pfcputicks() {
	local master; master=$(awk '{ print $1 }' "$WORK/pfrelay/queue/pid/master.pid")
	local pids=("$master")
	local p
	for p in $(ps -o pid= --ppid "$master"); do pids+=("$p"); done
	for p in "${pids[@]}"; do
		[[ -r /proc/$p/stat ]] && sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null
	done | awk '{ t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}
received() { grep -c ': discard: header Received:' "$WORK/sink/maillog" 2>/dev/null || true; }

# run NAME ADDR BYTES: push N messages, wait for the sink, print msgs/s.
run() {
	local name=$1 addr=$2 bytes=$3
	local base; base=$(received)
	local tls0; tls0=$(tlssessions)
	local pid=${SMG_PID:-}
	[[ $name == smgoff ]] && pid=$SMGOFF_PID
	local cpu0; cpu0=$(cputicks "$pid")
	local pfcpu0; pfcpu0=$(pfcputicks)
	local t0 t1
	t0=$(date +%s.%N)
	# -d keeps each session open for many messages, as an upstream MTA
	# does; NEWSESSION=1 opens a new session per message instead.
	local keep=-d
	[[ -n ${NEWSESSION:-} ]] && keep=
	smtp-source $keep -s "$SESSIONS" -m "$N" -l "$bytes" -M client.corp.test \
		-f alice@corp.test -t "bob@$DOMAIN" "$addr" 2>"$WORK/source-$name-$bytes.err" ||
		{ cat "$WORK/source-$name-$bytes.err" >&2; die "smtp-source into $name failed"; }
	local ts; ts=$(date +%s.%N)
	local deadline=$((SECONDS + 600)) got
	while :; do
		got=$(($(received) - base))
		((got >= N)) && break
		((SECONDS < deadline)) || die "$name: the sink got $got of $N after 10 minutes"
		sleep 0.02
	done
	t1=$(date +%s.%N)
	# Settle, then check nothing arrived twice (one discard line each).
	sleep 1
	got=$(($(received) - base))
	((got == N)) || log "$name: the sink counted $got messages for $N sent"
	awk -v n="$N" -v a="$t0" -v s="$ts" -v b="$t1" -v name="$name" -v bytes="$bytes" -v tls=$(($(tlssessions) - tls0)) 'BEGIN {
		printf "%-8s %7d B  %6d msgs  submit %6.2fs  end-to-end %6.2fs  %8.1f msgs/s  (%d TLS sessions to the sink)\n", name, bytes, n, s-a, b-a, n/(b-a), tls }'
	if [[ $name == postfix ]]; then
		awk -v t=$(($(pfcputicks) - pfcpu0)) -v hz="$(getconf CLK_TCK)" -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN {
			printf "         Postfix relay CPU, all its processes %.2fs (%.0f%% of one core, %.0f µs per message)\n", t/hz, 100*t/hz/(b-a), 1e6*t/hz/n }'
	fi
	if [[ $name == smg* ]]; then
		awk -v t=$(($(cputicks "$pid") - cpu0)) -v hz="$(getconf CLK_TCK)" -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN {
			printf "         smgctl CPU %.2fs (%.0f%% of one core, %.0f µs per message)\n", t/hz, 100*t/hz/(b-a), 1e6*t/hz/n }'
	fi
	echo "$N $t0 $t1" >"$WORK/result-$name-$bytes"
}

rate() { awk '{ print $1/($3-$2) }' "$WORK/result-$1-$2"; }

mode="smtp-source -d: sessions kept open"
[[ -n ${NEWSESSION:-} ]] && mode="smtp-source: a new session per message"
echo "== $N messages per run, $SESSIONS sessions ($mode), TLS to the sink; $(nproc) CPUs, $(uname -r)"
# cold NAME ADDR: one message into a relay that has sent nothing yet:
# the first delivery's latency, submission to the sink (with published
# policies: MX, MTA-STS TXT and HTTPS fetch, TLSA, DANE-checked TLS).
cold() {
	local base; base=$(received)
	local t0; t0=$(date +%s.%N)
	smtp-source -s 1 -m 1 -l "$SIZE" -M client.corp.test -f alice@corp.test -t "bob@$DOMAIN" "$2" ||
		die "smtp-source into $1 failed"
	while (($(received) - base < 1)); do sleep 0.002; done
	awk -v a="$t0" -v b="$(date +%s.%N)" -v name="$1" 'BEGIN { printf "%-8s cold: first message at the sink after %.1f ms\n", name, 1000*(b-a) }'
}
if [[ -n ${PUBLISHED:-} ]]; then
	echo "== PUBLISHED: $DOMAIN by MX, DNSSEC-signed, DANE-EE TLSA + MTA-STS enforce; smgctl = published policies on, smgoff = off"
	cold smgctl "$SMG_IP:2525"
	cold smgoff "$SMGOFF_IP:2525"
	grep -q '"auth":"dane"' "$WORK/smgctl-audit.log" || die "smgctl's delivery was not DANE-authenticated (audit: $WORK/smgctl-audit.log)"
fi
for bytes in $SIZE $BIG; do
	run postfix "$PFR_IP:25" "$bytes"
	run smgctl "$SMG_IP:2525" "$bytes"
	awk -v p="$(rate postfix "$bytes")" -v s="$(rate smgctl "$bytes")" -v b="$bytes" \
		'BEGIN { printf "ratio    %7d B  smgctl/postfix = %.2f\n", b, s/p }'
	if [[ -n ${PUBLISHED:-} ]]; then
		run smgoff "$SMGOFF_IP:2525" "$bytes"
		awk -v on="$(rate smgctl "$bytes")" -v off="$(rate smgoff "$bytes")" -v b="$bytes" \
			'BEGIN { printf "ratio    %7d B  published on/off = %.0f %%\n", b, 100*on/off }'
	fi
done

plain=$(grep 'disconnect from' "$WORK/sink/maillog" | grep ' mail=' | grep -vc 'starttls=1' || true)
echo "sink: $(tlssessions) TLS sessions in all; $plain sessions carried mail without STARTTLS"
echo "smgctl peak RSS after the runs: $(awk '/VmHWM/ {print $2, $3}' /proc/$SMG_PID/status)"

# --- 1,000 concurrent inbound sessions -----------------------------------
rss_before=$(awk '/VmRSS/ {print $2}' /proc/$SMG_PID/status)
coproc HOLDER { "$WORK/holdsessions" -addr "$SMG_IP:2525" -n "$HOLD"; }
HOLDER_PID_SAVED=$HOLDER_PID
PIDS+=("$HOLDER_PID_SAVED")
read -r counts <&"${HOLDER[0]}"
sleep 1
rss_held=$(awk '/VmRSS/ {print $2}' /proc/$SMG_PID/status)
echo "holding $HOLD sessions: $counts; smgctl RSS ${rss_before} kB idle -> ${rss_held} kB held, peak $(awk '/VmHWM/ {print $2, $3}' /proc/$SMG_PID/status)"
exec {HOLDER[1]}>&- # EOF on its stdin: it closes the sessions and exits
wait "$HOLDER_PID_SAVED" 2>/dev/null || true

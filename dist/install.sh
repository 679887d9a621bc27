#!/bin/sh
# Build smgctl and install it where dist/smgctl-relay.service expects it:
#
#   $PREFIX/bin/smgctl                            the binary (ExecStart=)
#   $PREFIX/share/man/man1/smgctl*.1              a page per command
#   $PREFIX/share/man/man5/smgctl-policy.5        the policy file format
#   $PREFIX/share/doc/smgctl/                     docs/*.md, relay.conf.example
#   $PREFIX/lib/systemd/system/smgctl-relay.service
#   $PREFIX/lib/tmpfiles.d/smgctl.conf            /var/spool/smgctl, /var/log/smgctl, /etc/smgctl
#
# PREFIX defaults to /usr; DESTDIR (default empty) is prepended to every
# path, for packaging. The unit file's ExecStart= and Documentation= are
# rewritten for PREFIX. Nothing outside DESTDIR$PREFIX is touched: no
# user is created, no service enabled, no /etc/smgctl/relay.conf written.
#
#   sudo dist/install.sh
#   DESTDIR=/tmp/pkg PREFIX=/usr dist/install.sh
#   SMGCTL_BINARY=./smgctl dist/install.sh     # install a binary built elsewhere
set -eu

PREFIX=${PREFIX:-/usr}
DESTDIR=${DESTDIR:-}
GO=${GO:-go}
case $PREFIX in
/*) ;;
*) echo "install.sh: PREFIX must be an absolute path, not $PREFIX" >&2; exit 2 ;;
esac

top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -n "${SMGCTL_BINARY:-}" ]; then
	cp "$SMGCTL_BINARY" "$work/smgctl"
else
	# -trimpath: no build paths in the binary; the module version and VCS
	# revision still reach `smgctl --version` through the build info.
	(cd "$top" && "$GO" build -trimpath -o "$work/smgctl" ./cmd/smgctl)
fi
"$work/smgctl" docs man "$work/man" >/dev/null

root=$DESTDIR$PREFIX
install -d "$root/bin" "$root/share/man/man1" "$root/share/man/man5" \
	"$root/share/doc/smgctl" "$root/lib/systemd/system" "$root/lib/tmpfiles.d"
install -m 0755 "$work/smgctl" "$root/bin/smgctl"
install -m 0644 "$work"/man/*.1 "$root/share/man/man1/"
install -m 0644 "$work"/man/*.5 "$root/share/man/man5/"
install -m 0644 "$top"/docs/*.md "$top/dist/relay.conf.example" "$root/share/doc/smgctl/"
sed -e "s|/usr/bin/smgctl|$PREFIX/bin/smgctl|" \
	-e "s|file:///usr/share/doc/smgctl/|file://$PREFIX/share/doc/smgctl/|" \
	"$top/dist/smgctl-relay.service" >"$work/smgctl-relay.service"
install -m 0644 "$work/smgctl-relay.service" "$root/lib/systemd/system/smgctl-relay.service"
install -m 0644 "$top/dist/smgctl.tmpfiles.conf" "$root/lib/tmpfiles.d/smgctl.conf"

cat <<MSG
smgctl installed under $root. Next, as root:
  useradd --system --home /var/spool/smgctl smgctl
  systemd-tmpfiles --create smgctl.conf
  cp $PREFIX/share/doc/smgctl/relay.conf.example /etc/smgctl/relay.conf  # then edit it
  smgctl relay --check && systemctl daemon-reload && systemctl enable --now smgctl-relay
MSG

#!/usr/bin/env bash
# Run pi/install.sh for real in a fresh Debian bookworm chroot of this machine's architecture (no emulation):
# apt, the service user, a venv with only the `pi` extra, its import checks, the offline systemctl path.
# Then, as the service user, `rocky-relay --help` and `launch --check pi` on the installed config. Needs root,
# mmdebstrap and the Debian mirror and PyPI; everything it mounts and makes is removed on exit.
#
#   sudo pi/check_install.sh      # prints "check_install: ok" last when every step passed
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR=$(mktemp -d /tmp/rr-pi-root.XXXXXX)
LOG="$DIR.log"
cleanup() {
    for m in dev proc; do umount -l "$DIR/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$DIR"
}
trap cleanup EXIT
die() { echo "check_install: $*" >&2; echo "(log: $LOG)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: apt-get install mmdebstrap"
[ "$(id -u)" -eq 0 ] || die "run it as root"
sources=()
[ -f /etc/apt/sources.list.d/debian.sources ] && sources=(/etc/apt/sources.list.d/debian.sources)
mmdebstrap --variant=apt --include=passwd,systemd,python3,python3-venv,python3-dev,gcc,libportaudio2,ca-certificates \
    bookworm "$DIR" "${sources[@]}" < /dev/null > "$LOG" 2>&1 || die "mmdebstrap failed"
mount -t proc proc "$DIR/proc"
mount --rbind /dev "$DIR/dev"
cp /usr/local/share/ca-certificates/*.crt "$DIR/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$DIR" update-ca-certificates >> "$LOG" 2>&1
cp /etc/resolv.conf "$DIR/etc/resolv.conf"
mkdir -p "$DIR/root/checkout"
tar -C "$SRC" --exclude=./.venv --exclude=./.git --exclude=./logs --exclude=__pycache__ -cf - . \
    | tar -C "$DIR/root/checkout" -xf -
run() { chroot "$DIR" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
run /root/checkout/pi/install.sh --server 127.0.0.1 >> "$LOG" 2>&1 || die "pi/install.sh failed"
echo "check_install: pi/install.sh ok"
as_service() { run su -s /bin/sh rocky-relay -c "cd /var/lib && $1"; }
as_service "/opt/rocky-relay/.venv/bin/rocky-relay --help >/dev/null" >> "$LOG" 2>&1 \
    || die "rocky-relay --help fails as the service user"
as_service "/opt/rocky-relay/.venv/bin/rocky-relay --config /etc/rocky-relay/edge.toml launch --check pi" \
    >> "$LOG" 2>&1 || die "launch --check pi fails as the service user"
echo "check_install: the service user runs rocky-relay and builds the pi set"
if run /opt/rocky-relay/.venv/bin/python -c "import psutil" >/dev/null 2>&1; then
    die "psutil is installed: the edge venv holds a server-only package"
fi
[ "$(run systemctl is-enabled rocky-relay-edge.service 2>/dev/null)" = enabled ] || die "the unit is not enabled"
rm -f "$LOG"
echo "check_install: ok"

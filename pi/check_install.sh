#!/usr/bin/env bash
# Run pi/install.sh for real in a fresh Debian bookworm chroot: apt, the service user, a venv with only the
# `pi` extra, its import checks, the offline systemctl path; then, as the service user, `rocky-relay --help` and
# `launch --check pi` on the installed config. `--arch arm64` makes it a Raspberry Pi's userland, run through
# qemu-user (binfmt_misc), so the aarch64 wheels, RPi.GPIO's build and the scripts are the Pi's own.
#
#   sudo pi/check_install.sh [--arch arm64] [--no-cache] [--then 'COMMAND']
#
# --then runs COMMAND on this host after the checks, with the chroot still up: ROOTFS names its root (the test
# starts a server here and the pi set in there). Prints "check_install: ok" last when every step passed. Needs
# root, mmdebstrap, the Debian mirror and PyPI; everything it mounts, starts and makes is gone on exit, failed
# or not. The bootstrapped userland is cached as a tarball under ~/.cache/rocky-relay/rootfs/ for a week
# (--no-cache: bootstrap afresh); pi/install.sh always runs on a fresh copy of it.
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST_ARCH=$(dpkg --print-architecture 2>/dev/null || echo unknown)
ARCH=$HOST_ARCH
THEN=""
CACHE=1
PACKAGES=passwd,systemd,python3,python3-venv,python3-dev,gcc,libportaudio2,ca-certificates

die() { echo "check_install: $*" >&2; [ -n "${LOG:-}" ] && [ -s "$LOG" ] && echo "(log: $LOG)" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) [ $# -ge 2 ] || die "--arch needs a Debian architecture (arm64)"; ARCH="$2"; shift 2 ;;
        --then) [ $# -ge 2 ] || die "--then needs a command"; THEN="$2"; shift 2 ;;
        --no-cache) CACHE=0; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[ "$(id -u)" -eq 0 ] || die "run it as root"
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: apt-get install mmdebstrap"
[ "$ARCH" = "$HOST_ARCH" ] || command -v arch-test >/dev/null \
    || die "arch-test is missing (mmdebstrap needs it for a foreign architecture): apt-get install arch-test"
if [ "$ARCH" != "$HOST_ARCH" ]; then
    # Foreign binaries run only through qemu-user, registered with binfmt_misc (flag F: the chroot needs no copy).
    qemu=$ARCH; [ "$ARCH" = arm64 ] && qemu=aarch64
    [ "$(head -n1 "/proc/sys/fs/binfmt_misc/qemu-$qemu" 2>/dev/null)" = enabled ] \
        || die "no qemu-$qemu in binfmt_misc: apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-$qemu"
fi

DIR=$(mktemp -d /tmp/rr-pi-root.XXXXXX)
LOG="$DIR.log"
MOUNTS=(proc dev dev/pts dev/shm)
in_root() {  # pids of the processes whose root is the chroot: what --then or a failed step left running there
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$DIR" ] && echo "${p#/proc/}"
    done
    return 0
}
cleanup() {
    local rc=$? pids i m
    for signal in TERM KILL; do
        pids=$(in_root)
        [ -z "$pids" ] && break
        kill "-$signal" $pids 2>/dev/null || true
        for i in $(seq 50); do [ -z "$(in_root)" ] && break; sleep 0.1; done
    done
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        m="$DIR/${MOUNTS[$i]}"
        mountpoint -q "$m" && { umount "$m" 2>/dev/null || umount -l "$m"; }
    done
    if grep -q " $DIR/" /proc/mounts; then
        echo "check_install: still mounted under $DIR, not removing it" >&2
        exit 1
    fi
    rm -rf --one-file-system "$DIR"
    [ "$rc" -eq 0 ] && rm -f "$LOG"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sources=()
[ -f /etc/apt/sources.list.d/debian.sources ] && sources=(/etc/apt/sources.list.d/debian.sources)
key=$(cat "${sources[@]}" <(echo "$PACKAGES") 2>/dev/null | sha256sum | cut -c1-12)
TARBALL=${ROCKY_RELAY_ROOTFS_CACHE:-$HOME/.cache/rocky-relay/rootfs}/bookworm-$ARCH-$key.tar
started=$SECONDS
if [ "$CACHE" -eq 1 ] && [ -n "$(find "$TARBALL" -mtime -7 2>/dev/null)" ]; then
    echo "check_install: bookworm $ARCH from the cache ($TARBALL)"
else
    mkdir -p "$(dirname "$TARBALL")"
    # Written aside and renamed: a bootstrap cut short never becomes the cache.
    mmdebstrap --arch="$ARCH" --variant=apt --format=tar --include="$PACKAGES" bookworm "$TARBALL.part" "${sources[@]}" \
        < /dev/null > "$LOG" 2>&1 || { rm -f "$TARBALL.part"; die "mmdebstrap failed"; }
    mv "$TARBALL.part" "$TARBALL"
    echo "check_install: bookworm $ARCH bootstrapped in $((SECONDS - started)) s"
fi
tar -C "$DIR" --numeric-owner -xpf "$TARBALL" || die "cannot unpack $TARBALL"

# Private mounts: with shared propagation they (and their unmounting) would reach the host's /dev.
mount -t proc proc "$DIR/proc" && mount --make-private "$DIR/proc"
mount --bind /dev "$DIR/dev" && mount --make-private "$DIR/dev"
mount --bind /dev/pts "$DIR/dev/pts" && mount --make-private "$DIR/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$DIR/dev/shm" && mount --make-private "$DIR/dev/shm"

# This host's extra CAs (a TLS-inspecting proxy's, a company's) and its PyPI mirror, if it has one: the
# chroot's apt and pip go out through the same network. A file:// index is this host's disk: not carried.
cp /usr/local/share/ca-certificates/*.crt "$DIR/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$DIR" update-ca-certificates >> "$LOG" 2>&1 || die "update-ca-certificates failed"
cp /etc/resolv.conf "$DIR/etc/resolv.conf"
{
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"  # pip's own bundle lacks the CAs copied above
    pip="$SRC/.venv/bin/pip"; [ -x "$pip" ] || pip="pip3"
    for setting in index-url trusted-host; do
        variable=PIP_$(echo "$setting" | tr a-z- A-Z_)
        value=${!variable:-$("$pip" config get "global.$setting" 2>/dev/null || true)}
        case "$setting=$value" in index-url=http*|trusted-host=?*) echo "$setting = $value" ;; esac
    done
} > "$DIR/etc/pip.conf"
proxies=()
for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -n "${!name:-}" ] && proxies+=("$name=${!name}")
done

mkdir -p "$DIR/root/checkout"
tar -C "$SRC" --exclude=./.venv --exclude=./.git --exclude=./logs --exclude=__pycache__ -cf - . \
    | tar -C "$DIR/root/checkout" -xf -
run() { chroot "$DIR" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "${proxies[@]}" "$@"; }
[ "$(run dpkg --print-architecture)" = "$ARCH" ] || die "the chroot is not $ARCH"
started=$SECONDS
run /root/checkout/pi/install.sh --server 127.0.0.1 >> "$LOG" 2>&1 || die "pi/install.sh failed"
echo "check_install: pi/install.sh ok on $ARCH in $((SECONDS - started)) s"
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
if [ -n "$THEN" ]; then
    started=$SECONDS
    ROOTFS="$DIR" bash -c "$THEN" || die "--then failed: $THEN"
    echo "check_install: --then ok in $((SECONDS - started)) s"
fi
echo "check_install: ok"

#!/usr/bin/env bash
# Install the Rocky Relay edge (mic, push-to-talk button, player, status LED) on Raspberry Pi OS.
#
#   sudo pi/install.sh [--server HOST]
#
# Installs only what the edge needs: PortAudio, a venv under /opt/rocky-relay with the project's
# `pi` extra (sounddevice, RPi.GPIO; no models), a system user, /etc/rocky-relay/edge.toml and the
# rocky-relay-edge systemd unit. Run it again to update the code: an edited config is kept.
set -euo pipefail

PREFIX=/opt/rocky-relay
CONFIG_DIR=/etc/rocky-relay
UNIT=rocky-relay-edge.service
SERVICE_USER=rocky-relay
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER=""

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --server) [ $# -ge 2 ] || die "--server needs a host name or address"; SERVER="$2"; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run it as root: sudo $0 $*"
[ -f "$SRC/pyproject.toml" ] || die "$SRC is not a rocky-relay checkout"
if ! grep -qs "Raspberry Pi" /proc/device-tree/model; then
    echo "install.sh: warning: this is not a Raspberry Pi; the button and LED need [button]/[leds] backend = \"fake\"" >&2
fi

echo "== system packages"
apt-get update
# python3-dev and gcc: RPi.GPIO is built from source when piwheels has no wheel for this Python.
apt-get install -y --no-install-recommends libportaudio2 python3-venv python3-dev gcc
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed (Raspberry Pi OS 12 bookworm has it); this is $(python3 -V)"

echo "== service user $SERVICE_USER"
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/rocky-relay --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi
for group in gpio audio; do  # gpio: /dev/gpiomem without root; audio: ALSA devices
    if getent group "$group" >/dev/null; then usermod -aG "$group" "$SERVICE_USER"; fi
done

echo "== code and venv in $PREFIX"
mkdir -p "$PREFIX/src"
# A copy, not the checkout itself: the service must not depend on someone's home directory,
# and building there as root would leave root-owned files behind.
tar -C "$SRC" --exclude=./.venv --exclude=./.git --exclude=./logs --exclude=./build \
    --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$PREFIX/src" -xf -
[ -x "$PREFIX/.venv/bin/python" ] || python3 -m venv "$PREFIX/.venv"
(cd "$PREFIX/src" && "$PREFIX/.venv/bin/pip" install --quiet ".[pi]")
# From /, so the checks see the installed packages, not a checkout in the current directory.
(cd / && "$PREFIX/.venv/bin/python" -c "import pi.button, pi.leds, sounddevice") \
    || die "the edge packages do not import; see the pip output above"
# The command the unit runs must start with only the edge packages (no server-only module on its path).
(cd / && "$PREFIX/.venv/bin/rocky-relay" --help >/dev/null) \
    || die "$PREFIX/.venv/bin/rocky-relay does not start; see the error above"

echo "== config in $CONFIG_DIR"
install -d -m 750 -o root -g "$SERVICE_USER" "$CONFIG_DIR"
if [ ! -f "$CONFIG_DIR/edge.toml" ]; then
    install -m 640 -o root -g "$SERVICE_USER" "$SRC/pi/edge.toml" "$CONFIG_DIR/edge.toml"
fi
if [ -n "$SERVER" ]; then
    sed -i "s#tcp://SERVER:#tcp://$SERVER:#g" "$CONFIG_DIR/edge.toml"
fi
# Every actor of the pi set, built from this config as the service will build it (nothing is started).
(cd / && "$PREFIX/.venv/bin/rocky-relay" --config "$CONFIG_DIR/edge.toml" launch --check pi) \
    || die "the pi set cannot be built from $CONFIG_DIR/edge.toml; see the error above"

echo "== systemd unit $UNIT"
install -m 644 "$SRC/pi/$UNIT" "/etc/systemd/system/$UNIT"
if [ ! -d /run/systemd/system ]; then
    # Not booted with systemd (a chroot, an image being built): enable the unit offline; it starts at boot.
    SYSTEMD_OFFLINE=1 systemctl enable "$UNIT" >/dev/null
    echo "systemd is not running here: $UNIT is enabled and starts at the next boot"
elif ! systemctl daemon-reload || ! systemctl enable "$UNIT" >/dev/null; then
    die "systemctl could not load $UNIT; see the error above"
elif grep -q "tcp://SERVER:" "$CONFIG_DIR/edge.toml"; then
    echo "Set the server's address in $CONFIG_DIR/edge.toml (or run again with --server HOST), then:"
    echo "    sudo systemctl start ${UNIT%.service}"
else
    systemctl restart "$UNIT"
    echo "Started. Follow it with: journalctl -fu ${UNIT%.service}"
fi

#!/bin/bash
# mmdebstrap customize hook, run on the build host: ROOT is the finished Debian root.
#   customize.sh ROOT WHEELS PLATFORM
# Installs the appliance offline from the wheels (no code of the target runs), the units, the users, the
# read-only-root layout (/etc links into /var/lib/eticket-system), and removes what must be per device.
set -euo pipefail
ROOT=$1
WHEELS=$2
PLATFORM=$3
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PYTHON=${PYTHON:-python3}

# The appliance: wheels for the target into /usr/lib/eticket/site, bytecode compiled here (same CPython
# minor version: checked) because the root is read-only on the device.
target_py=$(basename "$(readlink -f "$ROOT/usr/bin/python3")")
host_py=$("$PYTHON" -c 'import sys; print(f"python{sys.version_info.major}.{sys.version_info.minor}")')
if [ "$target_py" != "$host_py" ]; then
  echo "customize.sh: the image has $target_py, this host $host_py: bytecode would not match" >&2
  exit 1
fi
"$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELS" --only-binary=:all: --no-compile --no-warn-conflicts \
  --platform "manylinux2014_$PLATFORM" --platform "manylinux_2_28_$PLATFORM" --platform "manylinux_2_36_$PLATFORM" \
  --python-version 3.11 --implementation cp --abi cp311 --target "$ROOT/usr/lib/eticket/site" eticket
rm -rf "$ROOT/usr/lib/eticket/site/bin"
"$PYTHON" -m compileall -q -j 0 --invalidation-mode unchecked-hash -d /usr/lib/eticket/site \
  "$ROOT/usr/lib/eticket/site" >/dev/null

# Files that mirror their target paths, then the units and users.
cp -a --no-preserve=ownership "$HERE/rootfs/." "$ROOT/"
install -m 644 "$REPO"/systemd/*.service "$ROOT/usr/lib/systemd/system/"
install -m 644 "$REPO/systemd/sysusers.d/eticket.conf" "$ROOT/usr/lib/sysusers.d/eticket.conf"
systemd-sysusers --root="$ROOT"
systemctl --root="$ROOT" --quiet enable systemd-networkd.service eticket.service eticket-kiosk.service \
  eticket-firstboot.service eticket-usb-provision.service eticket-ssh-keys.service
# The display's console faces customers: no login prompt on tty1, and no getty spawned on other VTs either
# (NAutoVTs=0 in logind.conf.d); the admin logs in over SSH or the serial console.
systemctl --root="$ROOT" --quiet mask getty@tty1.service
mkdir -p "$ROOT/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants"
ln -sf /usr/lib/systemd/system/wpa_supplicant@.service \
  "$ROOT/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants/wpa_supplicant@wlan0.service"

# Read-only root: what first boot writes lives on the data partition (/var), linked from /etc.
STATE=/var/lib/eticket-system
mkdir -p "$ROOT$STATE/eticket" "$ROOT$STATE/ssh" "$ROOT/boot/firmware" "$ROOT/etc/wpa_supplicant"
chmod 700 "$ROOT$STATE/ssh"
ln -sfn "$STATE/eticket" "$ROOT/etc/eticket"
ln -sfn "$STATE/hostname" "$ROOT/etc/hostname"
ln -sfn "$STATE/localtime" "$ROOT/etc/localtime"
ln -sfn "$STATE/timezone" "$ROOT/etc/timezone"
ln -sfn "$STATE/locale" "$ROOT/etc/default/locale"
ln -sfn "$STATE/wpa_supplicant-wlan0.conf" "$ROOT/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
PYTHONPATH="$ROOT/usr/lib/eticket/site" "$PYTHON" -m provisioning seed --root "$ROOT"

# Per device, never in the image: machine-id (empty: systemd makes one at boot), SSH host keys (made by
# eticket-ssh-keys.service), logs and caches of the build.
: > "$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id" "$ROOT"/etc/ssh/ssh_host_*
rm -rf "$ROOT"/var/cache/apt/* "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/* "$ROOT"/var/cache/debconf/*-old \
  "$ROOT"/var/lib/dpkg/*-old "$ROOT"/tmp/*
mkdir -p "$ROOT/var/log/journal"
printf 'commit=%s\nsource_date_epoch=%s\n' "$(git -C "$REPO" rev-parse HEAD)" "$SOURCE_DATE_EPOCH" \
  > "$ROOT/etc/eticket-image-id"

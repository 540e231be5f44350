#!/bin/bash
# Install the Debian packages the tests need, when running as root and they are missing.
# Without root, say what is missing; the tests that need it skip on a desk and fail in CI.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v chromium >/dev/null || need+=(chromium)
command -v avahi-browse >/dev/null || need+=(avahi-utils)
command -v avahi-daemon >/dev/null || need+=(avahi-daemon)
command -v dbus-daemon >/dev/null || need+=(dbus-daemon)
command -v systemd-analyze >/dev/null || need+=(systemd)          # unit checks (tests/unit/test_systemd_units.py)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)  # the web screen behind a proxy (tests/e2e/test_web_screen_proxy.py)
command -v wpa_supplicant >/dev/null || [ -x /usr/sbin/wpa_supplicant ] || need+=(wpasupplicant)  # reads our Wi-Fi config
# A/B updates (tests/fleet/devicehost.py): each namespace "device" runs a real sshd and real RAUC (plain bundles
# need mksquashfs to build and a loop device to mount; the host kernel has no dm-verity)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v rauc >/dev/null || need+=(rauc)                      # also: fleet keys against RAUC (tests/fleet/test_keys.py)
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v openssl >/dev/null || need+=(openssl)
command -v debugfs >/dev/null || [ -x /usr/sbin/debugfs ] || need+=(e2fsprogs)  # test slot images: mkfs.ext4 -d, debugfs
command -v faketime >/dev/null || need+=(faketime)                # a device clock years behind (no RTC)
# The receipt PDFs' monospace font for print jobs (appliance/escpos/render.py: DejaVu Sans Mono covers the
# ESC/POS code pages: Latin, Greek, Cyrillic, box drawing)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || need+=(fonts-dejavu-core)
# A till that prints like TakePOS (../shared/clients/takepos-receipt.php: escpos-php, what Dolibarr vendors)
command -v php >/dev/null || need+=(php-cli)
if command -v php >/dev/null; then
  php -m 2>/dev/null | grep -qi '^intl$' || need+=(php-intl)
  php -m 2>/dev/null | grep -qi '^gd$' || need+=(php-gd)
else
  need+=(php-intl php-gd)
fi
# Extra tools by name: `sysdeps.sh wrk nginx` (benchmarks).
for tool in "$@"; do
  case "$tool" in
    wrk) command -v wrk >/dev/null || need+=(wrk) ;;
    nginx) command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light) ;;
  esac
done
. "$(dirname "$0")/_apt.sh"
install_missing "${need[@]}" || true

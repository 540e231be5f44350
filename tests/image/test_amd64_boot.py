"""Proof by boot: the amd64 image, built by the same recipe as the Raspberry Pi one, boots from its own disk
(UEFI firmware -> systemd-boot on the FAT -> kernel + host-built initramfs -> systemd) in qemu-system-x86_64,
with the shop's eticket.toml put on the FAT as an owner would. systemd brings the appliance to READY, /healthz
answers through a port forward on 127.0.0.1, first boot applied the settings (host name, SSH key accepted by
the guest's real sshd, Wi-Fi key, shop name) and scrubbed the passphrase, the data partition grew to the
larger card, the root is read-only, and a POS host on the guest's own LAN (a bridge in a network namespace
made here, never this machine's network) discovers the device over mDNS. The guest has a display (qemu's
standard VGA, a DRM device): the test reads the guest's own screen with qemu's ``screendump`` and decodes the
QR codes the kiosk draws there, the pairing QR at boot and the receipt's once a till on the LAN has sent it.

KVM when /dev/kvm can run Debian's kernel, else TCG (see qemu.choose_accel); the accelerator and the
boot-to-ready time are written to build/test-image-amd64/boot.json.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import require, samples
from tests.image.conftest import copy_image
from tests.image.qemu import Guest, choose_accel, make_usb_stick, put_boot_file, read_boot_file
from tests.network.netns import Host, Lan, discover_json, netns_available

# The first test also builds the image.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

BOOT_TIMEOUT_SECONDS = {"kvm": 120.0, "tcg": 420.0}
CARD_GROWTH_MIB = 512
SHOP = "Boulangerie Test"
USB_SHOP = "Boulangerie Stick"
HOSTNAME = "caisse-7"
PASSPHRASE = "croissant-42"


@dataclass
class Booted:
    guest: Guest
    key: Path
    pos: Host
    health: dict[str, object]
    ready_seconds: float
    accel: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def booted(amd64_build: Path, ssh_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    """The amd64 image booted once for this module, on a card 512 MiB larger than the image, with a second
    NIC on a namespace LAN where a POS host waits."""
    reason = netns_available()
    require(reason is None, reason or "")
    require(Path("/dev/net/tun").exists(), "/dev/net/tun is missing (tap devices for the guest's LAN)")
    accel, why = choose_accel("amd64")
    print(f"accelerator: {accel} ({why})")
    work = tmp_path_factory.mktemp("amd64-boot")
    disk = copy_image(amd64_build, "amd64", work / "disk.img", grow_mib=CARD_GROWTH_MIB)
    settings = work / "eticket.toml"
    settings.write_text(f'hostname = "{HOSTNAME}"\nshop_name = "{SHOP}"\nlocale = "de_DE.UTF-8"\n'
                        f'timezone = "Europe/Paris"\ndisplay_rotation = 90\n'
                        f'ssh_authorized_keys = ["{ssh_key.with_suffix(".pub").read_text().strip()}"]\n\n'
                        f'[wifi]\nssid = "Shop"\npassphrase = "{PASSPHRASE}"\ncountry = "FR"\n')
    put_boot_file(disk, settings, "eticket.toml")

    lan = Lan()
    pos = lan.add_host("pos", 10)
    tap = f"{lan.prefix}tap"
    stick_settings = work / "stick.toml"
    stick_settings.write_text(f'shop_name = "{USB_SHOP}"\n')
    stick = make_usb_stick(work / "stick.img", stick_settings)
    guest = Guest(arch="amd64", disk=disk, workdir=work, tap=tap, accel=accel, usb_stick=stick, display=True)
    try:
        _ip("tuntap", "add", "dev", tap, "mode", "tap")
        _ip("link", "set", tap, "up")
        guest.start()
        time.sleep(1)  # qemu has opened the tap: move it, still attached, onto the LAN's bridge
        _ip("link", "set", tap, "netns", lan.bridge_ns)
        _ip("-n", lan.bridge_ns, "link", "set", tap, "master", "br0")
        _ip("-n", lan.bridge_ns, "link", "set", tap, "up")
        ready, health = guest.wait_healthz(BOOT_TIMEOUT_SECONDS[accel])
        print(f"boot to /healthz: {ready:.1f} s ({accel})")
        yield Booted(guest=guest, key=ssh_key, pos=pos, health=health, ready_seconds=ready, accel=accel)
    finally:
        guest.stop()
        lan.close()
        subprocess.run(["ip", "link", "del", tap], capture_output=True, check=False)
        (amd64_build / "serial-amd64.log").write_text(guest.console_tail(200_000))


def _ssh(booted: Booted, command: str) -> str:
    result = booted.guest.ssh(booted.key, command)
    assert result.returncode == 0, f"{command!r} in the guest: {result.stderr}"
    return result.stdout


def _show(booted: Booted, unit: str, *props: str) -> dict[str, str]:
    out = _ssh(booted, f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_systemd_brings_the_appliance_to_ready(booted: Booted, amd64_build: Path) -> None:
    assert booted.health["status"] == "ok"
    state = _show(booted, "eticket.service", "Type", "ActiveState", "SubState", "StatusText", "WatchdogUSec",
                  "ActiveEnterTimestampMonotonic", "NRestarts", "User")
    assert state["Type"] == "notify" and state["ActiveState"] == "active" and state["SubState"] == "running"
    assert state["StatusText"] == "serving"  # sent by the appliance itself with READY=1
    assert state["WatchdogUSec"] == "30s" and state["NRestarts"] == "0" and state["User"] == "eticket"
    ready_in_guest = int(state["ActiveEnterTimestampMonotonic"]) / 1e6  # since the kernel started
    userspace = _ssh(booted, "systemctl is-system-running --wait >/dev/null; systemd-analyze time").strip()
    result = {"accel": booted.accel, "host_start_to_healthz_seconds": round(booted.ready_seconds, 1),
              "kernel_to_appliance_ready_seconds": round(ready_in_guest, 1), "systemd_analyze": userspace}
    (amd64_build / "boot.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    assert 0 < ready_in_guest < booted.ready_seconds


SCREEN_TIMEOUT_SECONDS = 240.0  # the kiosk starts after the appliance; its first frame under TCG


def _screen_qr(booted: Booted, name: str) -> list[str]:
    """The QR texts on the guest's screen now (qemu's screendump of its display), kept as build/…/NAME.png."""
    import zxingcpp
    from PIL import Image

    shot = booted.guest.screendump(booted.guest.workdir / f"{name}.ppm")
    with Image.open(shot) as image:
        image.save(booted.guest.workdir / f"{name}.png")
        return [r.text for r in zxingcpp.read_barcodes(image.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)]


def _wait_screen_qr(booted: Booted, name: str, want: object) -> list[str]:
    """Read the screen until ``want(texts)`` holds or SCREEN_TIMEOUT_SECONDS pass; the last texts read."""
    deadline = time.monotonic() + SCREEN_TIMEOUT_SECONDS
    texts = _screen_qr(booted, name)
    while not want(texts) and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(3)
        texts = _screen_qr(booted, name)
    return texts


def _display_state(booted: Booted) -> dict[str, object]:
    token = json.loads(_ssh(booted, "cat /var/lib/eticket/kiosk.json"))["token"]
    state: dict[str, object] = httpx.get(booted.guest.url + "/api/v1/display",
                                         headers={"Authorization": f"Bearer {token}"}).json()
    return state


def test_the_screen_shows_the_kiosks_pairing_qr_and_never_a_login_prompt(booted: Booted, amd64_build: Path) -> None:
    """The customer screen of the booted device, read from the guest's own display: the kiosk (under its
    systemd sandbox, with the image's own wheels) draws the device's current pairing QR full screen, so no
    login prompt or console text is on it; no getty is on the display's console and the framebuffer console
    is unbound (nothing can draw over the picture); the kiosk never restarted."""
    uri = str(_display_state(booted)["pairing"]["uri"])  # type: ignore[index]
    texts = _wait_screen_qr(booted, "screen-pairing", lambda t: t == [uri])
    kiosk = _show(booted, "eticket-kiosk.service", "ActiveState", "SubState", "NRestarts", "StatusText")
    journal = _ssh(booted, "journalctl -b -u eticket-kiosk.service --no-pager -o cat")
    assert texts == [uri], f"screen shows {texts}; kiosk {kiosk}; journal:\n{journal[-3000:]}"
    shutil.copy(booted.guest.workdir / "screen-pairing.png", amd64_build / "screen-pairing.png")
    assert kiosk["ActiveState"] == "active" and kiosk["SubState"] == "running" and kiosk["NRestarts"] == "0", kiosk
    # No Mesa in the image for SDL's KMSDRM: the kiosk draws on the DRM driver's fbdev emulation, /dev/fb0
    assert "drawing on the framebuffer /dev/fb0" in journal, journal[-3000:]
    consoles = _ssh(booted, "grep -H . /sys/class/vtconsole/vtcon*/name /sys/class/vtconsole/vtcon*/bind")
    fbcon = [line for line in consoles.splitlines() if "frame buffer" in line]
    assert fbcon and _ssh(booted, f"cat {fbcon[0].split(':')[0].replace('/name', '/bind')}").strip() == "0", consoles
    assert "waiting for a display" not in journal and "Traceback" not in journal, journal[-3000:]
    splash = _show(booted, "eticket-splash.service", "ActiveState", "Result")  # white from fb0's appearance
    assert splash == {"ActiveState": "active", "Result": "success"}, splash
    assert _ssh(booted, "systemctl is-enabled getty@tty1.service || true").strip() == "masked"
    gettys = _ssh(booted, "ps -eo args | grep '[g]etty' || true").splitlines()
    assert all("tty1" not in line for line in gettys), gettys  # the serial console keeps its getty


def test_the_whole_system_is_up_without_failed_units(booted: Booted) -> None:
    assert _ssh(booted, "systemctl is-system-running --wait || true").strip() == "running", \
        _ssh(booted, "systemctl --failed --no-pager || true")


def test_first_boot_applied_the_shop_settings(booted: Booted) -> None:
    assert _ssh(booted, "hostname").strip() == HOSTNAME  # and the SSH key was accepted to ask
    config = _ssh(booted, "cat /etc/eticket/eticket.toml")
    assert f'name = "{SHOP}"' in config and 'language = "de"' in config
    assert _ssh(booted, "readlink -f /etc/localtime").strip() == "/usr/share/zoneinfo/Europe/Paris"
    assert _ssh(booted, "cat /etc/eticket/kiosk.env").strip() == "ETICKET_KIOSK_ARGS=--rotate 90"
    wifi = _ssh(booted, "cat /etc/wpa_supplicant/wpa_supplicant-wlan0.conf")
    assert 'ssid="Shop"' in wifi and "psk=" in wifi and PASSPHRASE not in wifi
    on_fat = _ssh(booted, "cat /boot/firmware/eticket.toml")
    assert PASSPHRASE not in on_fat and f'hostname = "{HOSTNAME}"' in on_fat
    assert booted.health["paired"] is False


def test_the_passphrase_is_gone_from_the_card_itself(booted: Booted) -> None:
    _ssh(booted, "sync")
    assert PASSPHRASE not in read_boot_file(booted.guest.disk, "eticket.toml")


def test_root_is_read_only_and_the_data_partition_filled_the_card(booted: Booted) -> None:
    assert "ro" in _ssh(booted, "findmnt -no OPTIONS /").split(",")
    denied = booted.guest.ssh(booted.key, "touch /usr/eticket-write-test")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    sizes = _ssh(booted, "lsblk -bnlo NAME,SIZE /dev/vda && findmnt -bno SIZE /var").split()
    disk_bytes = int(sizes[1])
    data_bytes = int(dict(zip(sizes[0:-1:2], sizes[1:-1:2], strict=True))["vda3"])
    var_fs_bytes = int(sizes[-1])
    assert data_bytes > (256 + CARD_GROWTH_MIB - 8) * 2**20, sizes  # grown from 256 MiB to the card's end
    assert var_fs_bytes > (256 + CARD_GROWTH_MIB // 2) * 2**20, sizes  # and the file system with it
    assert disk_bytes - data_bytes > 0
    kernel_log = _ssh(booted, "journalctl -b -k --no-pager | grep eticket-initramfs")
    assert "data partition /dev/vda3 grown from 524288 to" in kernel_log


def test_the_device_is_discovered_over_mdns_on_its_lan(booted: Booted, cli_env: dict[str, str]) -> None:
    found: list[dict[str, object]] = []
    deadline = time.monotonic() + 60  # IPv4 link-local address, then the appliance re-announces
    while time.monotonic() < deadline and not found:
        found = [d for d in discover_json(booted.pos, cli_env, timeout=4.0) if d["id"] == booted.health["device_id"]]
    assert found, ("the guest was not discovered from the POS host; the appliance's journal:\n"
                   + booted.guest.ssh(booted.key, "journalctl -b -u eticket --no-pager | grep -v ' GET ' "
                                                   "| tail -n 60; ip -br addr").stdout)
    (device,) = found
    assert device["name"] == SHOP and device["fingerprint"] == booted.health["fingerprint"]
    assert any(re.match(r"169\.254\.", str(a)) for a in device["addresses"]), device  # type: ignore[attr-defined]


def test_units_verify_inside_the_image_and_the_appliance_exposure_holds(booted: Booted) -> None:
    units = ("eticket.service eticket-kiosk.service eticket-firstboot.service eticket-usb-provision.service "
             "eticket-ssh-keys.service eticket-splash.service")
    verify = booted.guest.ssh(booted.key, f"systemd-analyze verify {units}")
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    security = _ssh(booted, "systemd-analyze security eticket.service --no-pager | tail -n 1")
    level = float(re.search(r"exposure level for eticket.service: (\d+\.\d+)", security).group(1))  # type: ignore[union-attr]
    assert level <= 1.5, security


def test_a_bad_settings_file_is_reported_and_the_device_stays_usable(booted: Booted) -> None:
    _ssh(booted, "printf 'hostname = \"caisse-7\"\\ndisplay_rotation = 45\\n' > /boot/firmware/eticket.toml")
    failed = booted.guest.ssh(booted.key, "systemctl restart eticket-firstboot.service")
    assert failed.returncode != 0
    journal = _ssh(booted, "journalctl -b -u eticket-firstboot.service --no-pager -n 20")
    assert "/boot/firmware/eticket.toml: display_rotation: must be one of 0, 90, 180, 270" in journal
    status = json.loads(_ssh(booted, "cat /run/eticket-provision/status.json"))
    assert status["ok"] is False and "display_rotation" in status["message"]
    assert _ssh(booted, "cat /etc/eticket/kiosk.env").strip() == "ETICKET_KIOSK_ARGS=--rotate 90"
    assert booted.guest.wait_healthz(30)[1]["status"] == "ok"


def test_a_usb_stick_plugged_in_later_applies_its_settings(booted: Booted) -> None:
    """This is the shop owner changing the shop name without opening the case: plug in a stick."""
    answer = booted.guest.plug_usb_stick()
    assert "Error" not in answer, answer
    deadline = time.monotonic() + 120
    config = ""
    while time.monotonic() < deadline and f'name = "{USB_SHOP}"' not in config:
        time.sleep(3)
        config = _ssh(booted, "cat /etc/eticket/eticket.toml")
    assert f'name = "{USB_SHOP}"' in config, _ssh(booted, "journalctl -b -u eticket-usb-provision --no-pager")
    journal = _ssh(booted, "journalctl -b -u eticket-usb-provision --no-pager")
    assert "applied /run/eticket-usb/sda/eticket.toml: appliance" in journal, journal
    assert booted.guest.wait_healthz(120)[1]["status"] == "ok"  # restarted with the new name


def test_the_watchdog_restarts_a_hung_appliance(booted: Booted) -> None:
    """This is when the appliance's event loop hangs: its pings stop and systemd restarts it."""
    pid = _show(booted, "eticket.service", "MainPID")["MainPID"]
    _ssh(booted, f"kill -STOP {pid}")
    deadline = time.monotonic() + 150
    restarts = "0"
    while time.monotonic() < deadline and restarts == "0":
        time.sleep(5)
        restarts = _show(booted, "eticket.service", "NRestarts")["NRestarts"]
    assert restarts == "1"
    journal = _ssh(booted, "journalctl -b -u eticket.service --no-pager | grep -i watchdog || true")
    assert "Watchdog timeout" in journal, journal
    assert booted.guest.wait_healthz(120)[1]["status"] == "ok"


def test_a_till_on_the_lan_pairs_sends_a_receipt_and_a_phone_downloads_it(booted: Booted, cli_env: dict[str, str],
                                                                          amd64_build: Path) -> None:
    """The product's main job on the built image, under its systemd sandbox: a till on the shop's LAN pairs by
    the code on the screen, sends a real receipt (PDF checks in worker processes under the unit's seccomp
    filter), the receipt's QR appears on the device's own screen (qemu's screendump), and the customer's phone
    fetches the same bytes."""
    token = json.loads(_ssh(booted, "cat /var/lib/eticket/kiosk.json"))["token"]
    state = httpx.get(booted.guest.url + "/api/v1/display", headers={"Authorization": f"Bearer {token}"}).json()
    assert state["scene"] == "pairing", state
    pos_env = {**cli_env, "ETICKET_MDNS_INTERFACES": "eth0"}
    # This LAN has no DHCP server: the guest took a link-local IPv4 address; give the till one too, as a till
    # with link-local addressing (avahi-autoipd, Windows APIPA) has, so that both ends are on-link.
    subprocess.run(["ip", "-n", booted.pos.ns, "addr", "replace", "169.254.77.10/16", "dev", "eth0"], check=True)
    paired = booted.pos.eticket("pair", "--code", state["pairing"]["code"], "--device",
                                str(booted.health["device_id"]), "--mdns-interfaces", "eth0", "--pos-name", "Till 1",
                                env=pos_env, timeout=120)
    assert paired.returncode == 0, paired.stderr
    pdf = samples("pdf")[0]
    sent = booted.pos.eticket("send", str(pdf), "--total", "12.50", "--currency", "EUR", "--mdns-interfaces",
                              "eth0", env=pos_env, timeout=120)
    assert sent.returncode == 0, sent.stderr + _ssh(booted, "journalctl -b -u eticket.service --no-pager -n 40")
    url = sent.stdout.strip().splitlines()[-1]
    assert "/r/" in url, sent.stdout
    texts = _wait_screen_qr(booted, "screen-receipt", lambda t: t == [url])  # the customer scans the screen
    assert texts == [url], _ssh(booted, "journalctl -b -u eticket-kiosk.service --no-pager -o cat -n 40")
    shutil.copy(booted.guest.workdir / "screen-receipt.png", amd64_build / "screen-receipt.png")
    path = url[url.index("/r/"):]
    downloaded = httpx.get(booted.guest.url + path)  # the phone, through the forwarded customer port
    assert downloaded.status_code == 200 and downloaded.content == pdf.read_bytes()
    assert httpx.get(booted.guest.url + "/api/v1/display",
                     headers={"Authorization": f"Bearer {token}"}).json()["scene"] == "downloaded"


def test_a_till_on_the_lan_prints_a_receipt_to_port_9100_and_its_qr_is_on_the_screen(booted: Booted) -> None:
    """The device as a receipt printer on the built image: allowed on the device (``eticket printers allow``),
    the till on the LAN prints the bakery's receipt with escpos-php (as Dolibarr's server does) to the
    guest's port 9100; its QR shows on the guest's own screen and the PDF holds the receipt's text."""
    import pypdfium2 as pdfium

    from tests.conftest import SAMPLES

    php = shutil.which("php")
    assert php is not None, "php-cli (make test installs it)"
    allowed = _ssh(booted, "eticket printers allow 169.254.77.10 --data-dir /var/lib/eticket --json")
    assert json.loads(allowed)["network"] == "169.254.77.10/32"
    subprocess.run(["ip", "-n", booted.pos.ns, "addr", "replace", "169.254.77.10/16", "dev", "eth0"], check=True)
    guest = re.search(r"inet (169\.254\.\d+\.\d+)/", _ssh(booted, "ip -4 -o addr"))  # the LAN's link-local
    assert guest, _ssh(booted, "ip -4 -o addr")
    printed = booted.pos.run(php, str(SAMPLES.parent / "clients" / "takepos-receipt.php"),
                             str(SAMPLES / "takepos" / "bakery.json"), "--to", f"tcp:{guest.group(1)}:9100",
                             timeout=120)
    assert printed.returncode == 0, printed.stderr
    texts = _wait_screen_qr(booted, "screen-printed", lambda t: len(t) == 1 and "/r/" in t[0])
    assert len(texts) == 1, _ssh(booted, "journalctl -b -u eticket.service --no-pager -o cat -n 40")
    downloaded = httpx.get(booted.guest.url + texts[0][texts[0].index("/r/"):])
    assert downloaded.status_code == 200
    doc = pdfium.PdfDocument(downloaded.content)
    text = doc[0].get_textpage().get_text_range()
    assert "Boulangerie Dupré" in text and "6,50" in text, text

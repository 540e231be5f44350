"""The kiosk process follows the appliance; when the appliance restarts it shows "connecting" and recovers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import ETICKET, REPO, Appliance, decode_qr_png, samples, wait_for


def _qr_now(png: Path) -> list[str]:
    try:
        return decode_qr_png(png)
    except (OSError, SyntaxError, ValueError):
        return []


def _shows_connecting(png: Path) -> bool:
    """True when the PNG is, pixel for pixel, the connecting scene."""
    import pygame

    from kiosk.scenes import render

    try:
        shown = pygame.image.load(str(png))
    except (pygame.error, FileNotFoundError):
        return False
    expected = render(None, shown.get_size())
    return bool(pygame.image.tobytes(shown, "RGB") == pygame.image.tobytes(expected, "RGB"))


def test_headless_kiosk_shows_tickets_and_survives_an_appliance_restart(appliance: Appliance, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    log = open(tmp_path / "kiosk.log", "wb")
    kiosk = subprocess.Popen([*ETICKET, "kiosk", "--data-dir", str(appliance.data_dir), "--size", "800x480"],
                             env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    screen = appliance.data_dir / "screen.png"
    try:
        wait_for(lambda: any(u.startswith("eticket://pair") for u in _qr_now(screen)), 20, "the pairing QR")
        token = appliance.pair()
        wait_for(lambda: _qr_now(screen) == [], 10, "the idle scene after pairing")

        sent = appliance.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"}).json()
        wait_for(lambda: _qr_now(screen) == [sent["url"]], 10, "the ticket QR")

        appliance.kill9()
        wait_for(lambda: _shows_connecting(screen) and kiosk.poll() is None, 15, "the connecting scene")
        appliance.start()
        sent2 = appliance.api.post("/api/v1/tickets", content=samples("pdf")[1].read_bytes(),
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"}).json()
        wait_for(lambda: _qr_now(screen) == [sent2["url"]], 20, "the ticket QR after the restart")
        assert kiosk.poll() is None, "the kiosk must keep running"
    finally:
        kiosk.terminate()
        kiosk.wait(10)


def test_idle_screen_shows_the_configured_logo_and_clock(appliance_factory: object, tmp_path: Path) -> None:
    """A shop's logo (config) and the time appear on the idle screen; a bad logo file is refused at start."""
    import httpx
    import pygame

    from tests.conftest import run_cli

    logo = tmp_path / "logo.png"
    art = pygame.Surface((120, 60))
    art.fill((200, 30, 30))
    pygame.image.save(art, str(logo))
    app: Appliance = appliance_factory("--logo", str(logo), "--clock", "--language", "it")  # type: ignore[operator]
    app.pair()
    state = app.display()
    assert state["scene"] == "idle" and state["clock"] is True and str(state["logo"]).startswith("/logo?v=")
    assert httpx.get(app.url + "/logo").content == logo.read_bytes()
    shot = tmp_path / "idle.png"
    run_cli("kiosk", "--data-dir", str(app.data_dir), "--snapshot", str(shot), env=dict(os.environ))
    image = pygame.image.load(str(shot))
    reds = sum(1 for x in range(0, 800, 4) for y in range(0, 480, 4) if image.get_at((x, y))[:3] == (200, 30, 30))
    assert reds > 50  # the logo is drawn

    bad = tmp_path / "logo.txt"
    bad.write_text("not an image")
    refused = run_cli("serve", "--logo", str(bad), "--data-dir", str(tmp_path / "d"), env=dict(os.environ),
                      check=False, timeout=30)
    assert refused.returncode == 2 and "neither a PNG nor a JPEG" in refused.stderr


def test_a_kiosk_whose_token_copy_is_refused_exits_for_a_restart(appliance: Appliance, tmp_path: Path) -> None:
    """On a device the kiosk service holds a copy of the screen token made when it started; after the
    appliance restarts (a new token), the kiosk must exit so that systemd starts it with the current one,
    rather than show "connecting" forever."""
    copy = tmp_path / "kiosk-copy"
    copy.mkdir()
    stale = json.loads((appliance.data_dir / "kiosk.json").read_text())
    stale["token"] = "stale-token-from-before-a-restart"
    (copy / "kiosk.json").write_text(json.dumps(stale))
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    env.pop("DISPLAY", None)
    done = subprocess.run([*ETICKET, "kiosk", "--data-dir", str(copy)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 75, done.stderr[-1000:]
    assert "refuses the screen token" in done.stderr


def _shows_removed(png: Path, lang: str | None) -> bool:
    """True when the PNG is, pixel for pixel, the "this screen was removed" scene in ``lang``."""
    import pygame

    from kiosk.scenes import SCENE_SCREEN_REMOVED, render

    try:
        shown = pygame.image.load(str(png))
    except (pygame.error, FileNotFoundError):
        return False
    expected = render({"scene": SCENE_SCREEN_REMOVED, "lang": lang}, shown.get_size())
    return bool(pygame.image.tobytes(shown, "RGB") == pygame.image.tobytes(expected, "RGB"))


def test_a_revoked_screen_says_it_was_removed_also_after_a_restart_until_paired_again(
        appliance: Appliance, tmp_path: Path) -> None:
    """A second screen (``eticket kiosk --claim``) shows receipts until the shop owner revokes it; from then on
    it gets no state (the next receipt's QR never reaches it) and it says, on the screen, that it was removed
    and how to pair it again, in the shop's language; restarted, it says so again (never "it restarted?", never
    a loop of restarts). Paired again with a new link, it shows receipts once more."""
    import time

    import httpx

    from kiosk.follow import claim_screen
    from tests.conftest import run_cli

    token = appliance.pair()
    cli_env = dict(os.environ)

    def new_link() -> str:
        run_cli("screens", "add", "--name", "Back office", "--data-dir", str(appliance.data_dir), env=cli_env)
        return str(appliance.display()["screen_link"]["url"])  # type: ignore[index]

    other = tmp_path / "second-screen"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    log = open(tmp_path / "kiosk.log", "wb")

    def start(*claim: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*ETICKET, "kiosk", *claim, "--data-dir", str(other), "--size", "800x480"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    kiosk = start("--claim", new_link())
    screen = other / "screen.png"

    def send(index: int) -> str:
        r = appliance.api.post("/api/v1/tickets", content=samples("pdf")[index].read_bytes(),
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
        return str(r.json()["url"])

    try:
        first = send(0)
        wait_for(lambda: _qr_now(screen) == [first], 20, "the ticket QR on the claimed screen")
        (row,) = json.loads(run_cli("screens", "list", "--json", "--data-dir", str(appliance.data_dir),
                                    env=cli_env).stdout)
        run_cli("screens", "revoke", row["id"], "--data-dir", str(appliance.data_dir), env=cli_env)
        second = send(1)
        seen: list[list[str]] = []

        def removed(lang: str | None) -> bool:
            seen.append(_qr_now(screen))
            return _shows_removed(screen, lang)

        wait_for(lambda: removed("fr"), 15, "the claimed screen to say it was removed (in French)")
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            seen.append(_qr_now(screen))
            time.sleep(0.2)
        assert [second] not in seen, "a revoked screen received the next receipt's URL"
        assert kiosk.poll() is None, "a removed screen keeps saying so rather than exit"
        refused = httpx.get(appliance.url + "/api/v1/display", headers={
            "Authorization": f"Bearer {json.loads((other / 'kiosk.json').read_text())['token']}"})
        assert refused.status_code == 401

        kiosk.terminate()
        kiosk.wait(10)
        screen.unlink()
        kiosk = start()  # the restart: it has only the revoked token
        wait_for(lambda: _shows_removed(screen, None), 20, "the restarted screen to say it was removed")
        assert kiosk.poll() is None

        claim_screen(new_link(), other)  # paired again (what 'eticket kiosk --claim' does first)
        third = send(2)
        wait_for(lambda: _qr_now(screen) == [third], 20, "receipts on the screen paired again")
        said = (tmp_path / "kiosk.log").read_text()
        assert "no longer accepts this screen: it was revoked" in said and "'eticket screens add'" in said
        assert "it restarted?" not in said
    finally:
        kiosk.terminate()
        kiosk.wait(10)


def test_the_kiosk_lays_out_the_receipt_for_the_panel_size_it_is_given(appliance: Appliance, tmp_path: Path) -> None:
    """``eticket kiosk --diagonal-inches``: on a 2.8" panel the receipt screen is the hold-close layout; on a
    21.5" monitor the QR stays within what a phone at 30 cm frames, smaller than without the setting; a
    diagonal that is not a number is refused naming the option."""
    import pygame
    import zxingcpp
    from PIL import Image

    from kiosk.panel import size_from_diagonal
    from kiosk.scenes import qr_max_mm, render
    from tests.conftest import run_cli

    token = appliance.pair()
    sent = appliance.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"}).json()
    env = dict(os.environ)

    def snap(size: str, *extra: str) -> Path:
        out = tmp_path / f"{size}{'-'.join(extra)}.png"
        run_cli("kiosk", "--data-dir", str(appliance.data_dir), "--size", size, "--snapshot", str(out), *extra, env=env)
        return out

    small = pygame.image.load(str(snap("320x240", "--diagonal-inches", "2.8")))
    expected = render({**appliance.display(), "panel_mm": list(size_from_diagonal(2.8, (320, 240)))}, (320, 240))
    assert pygame.image.tobytes(small, "RGB") == pygame.image.tobytes(expected, "RGB")

    def qr_width(png: Path) -> float:
        with Image.open(png) as image:
            (found,) = zxingcpp.read_barcodes(image.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)
        assert found.text == sent["url"]
        return float(found.position.top_right.x - found.position.top_left.x)

    px_per_mm = 1920 / size_from_diagonal(21.5, (1920, 1080))[0]
    capped, full = qr_width(snap("1920x1080", "--diagonal-inches", "21.5")), qr_width(snap("1920x1080"))
    assert capped / px_per_mm < qr_max_mm() < full / px_per_mm

    refused = run_cli("kiosk", "--data-dir", str(appliance.data_dir), "--diagonal-inches", "3.5in", env=env,
                      check=False)
    assert refused.returncode == 2 and "--diagonal-inches" in refused.stderr and "3.5in" in refused.stderr

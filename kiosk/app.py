"""The kiosk process: one window (or KMSDRM output, or headless) showing the current scene."""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from pathlib import Path

import httpx
import pygame

from appliance._sdnotify import Notifier

from .fbdev import FramebufferError, FramebufferSink
from .follow import Follower, fetch_state, read_endpoint
from .hotplug import Devices, DrmWatcher
from .panel import SizeMm, connected_size_mm, size_from_diagonal
from .scenes import PANEL_MM_KEY, SCENE_SCREEN_REMOVED, pairing_expiry, render

log = logging.getLogger(__name__)

FRAME_INTERVAL_MS = 100
"""Longest wait between two looks at SDL events; a new display state wakes the loop at once."""
SCREEN_PNG = "screen.png"


def has_display() -> bool:
    """True when SDL can open a real output: X11/Wayland session, or a KMSDRM request by the environment."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or \
        os.environ.get("SDL_VIDEODRIVER", "") not in ("", "dummy", "offscreen")


def save_png(surface: pygame.Surface, path: Path) -> None:
    """Write ``surface`` to ``path`` atomically (a viewer never reads half a file)."""
    tmp = path.with_name(path.name + ".tmp.png")
    pygame.image.save(surface, str(tmp))
    os.replace(tmp, path)


ROTATIONS = (0, 90, 180, 270)


def logical_size(physical: tuple[int, int], rotate: int) -> tuple[int, int]:
    """The size scenes are drawn at for a panel of ``physical`` size turned by ``rotate`` degrees."""
    return (physical[1], physical[0]) if rotate in (90, 270) else physical


def orient(frame: pygame.Surface, rotate: int) -> pygame.Surface:
    """Turn a drawn frame ``rotate`` degrees clockwise (0/90/180/270, exact: no resampling)."""
    return pygame.transform.rotate(frame, -rotate) if rotate else frame


class Extras:
    """What the screen adds to the appliance's state before drawing: the logo image (fetched once per
    version from the appliance) and the time of day. Keeps the scenes pure functions of their input."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._logos: dict[str, pygame.Surface | None] = {}

    def add(self, state: dict[str, object] | None, now: float | None = None) -> dict[str, object] | None:
        if state is None:
            return None
        out = dict(state)
        logo = state.get("logo")
        if isinstance(logo, str) and logo:
            if logo not in self._logos:
                self._logos[logo] = self._fetch(logo)
            out["logo_image"] = self._logos[logo]
        if state.get("clock"):
            out["time"] = time.strftime("%H:%M", time.localtime(now))
        if state.get("pairing"):  # the pairing scene counts down the code's minutes
            out["now"] = time.time() if now is None else now
        return out

    def _fetch(self, path: str) -> pygame.Surface | None:
        try:
            response = httpx.get(read_endpoint(self._data_dir).url + path, timeout=5)
            response.raise_for_status()
            return pygame.image.load(io.BytesIO(response.content))
        except (OSError, ValueError, KeyError, httpx.HTTPError, pygame.error) as exc:
            log.warning("logo not shown: %s", exc)
            return None


def compose(state: dict[str, object] | None, physical: tuple[int, int], rotate: int,
            panel_mm: SizeMm | None = None) -> pygame.Surface:
    """What the panel shows: the scene drawn upright at the logical size, then turned onto the panel.
    ``panel_mm``: the panel's physical ``(width, height)`` in mm before rotation, if known."""
    if state is not None and panel_mm is not None:
        turned = rotate in (90, 270)
        state = {**state, PANEL_MM_KEY: [panel_mm[1], panel_mm[0]] if turned else list(panel_mm)}
    return orient(_safe_render(state, logical_size(physical, rotate)), rotate)


def panel_size_mm(physical: tuple[int, int], diagonal_inches: float | None, sysfs_drm: Path | None) -> SizeMm | None:
    """The panel's ``(width_mm, height_mm)``: from ``diagonal_inches`` (the ``--diagonal-inches`` setting) and
    the resolution if given, else from a connected DRM connector's EDID under ``sysfs_drm``, else None."""
    if diagonal_inches is not None:
        return size_from_diagonal(diagonal_inches, physical)
    return connected_size_mm(sysfs_drm) if sysfs_drm is not None else None


def snapshot(data_dir: Path, size: tuple[int, int], out: Path, rotate: int = 0,
             diagonal_inches: float | None = None) -> bool:
    """Render what the screen shows now into ``out`` (PNG, the panel's ``size``, turned by ``rotate``; a panel
    of ``diagonal_inches`` if given). Returns False if the appliance was unreachable (the PNG then shows the
    "connecting" scene, as the screen would)."""
    try:
        state = fetch_state(read_endpoint(data_dir))
    except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:
        log.warning("appliance unreachable (%s): snapshot shows the connecting scene", exc)
        state = None
    pygame.font.init()
    save_png(compose(Extras(data_dir).add(state), size, rotate, panel_size_mm(size, diagonal_inches, None)), out)
    return state is not None


KMSDRM = "kmsdrm"
DISPLAY_RETRY_SECONDS = 5.0
"""While waiting for a display, look again this often even without a udev event (a missed event, or a device
node whose permissions udev had not set yet when its event came)."""


class _Panel:
    """Where frames go: an SDL window/KMSDRM output, a raw framebuffer, or nothing (headless).

    On the device (``SDL_VIDEODRIVER=kmsdrm``) a display may be missing at start (a panel whose driver loads
    late, an HDMI cable plugged in later) or SDL may be unable to drive it: then frames go to a framebuffer if
    there is one (``fallback``), else the panel ``waiting``s and :meth:`reopen` is tried again on udev news and
    every ``DISPLAY_RETRY_SECONDS``. Nothing of this exits: the service keeps running and says it waits.
    """

    def __init__(self, size: tuple[int, int] | None, fullscreen: bool, fbdev: Path | None,
                 devices: Devices | None = None) -> None:
        self.fb: FramebufferSink | None = None
        self.fallback = False  # drawing on a framebuffer because KMS/DRM could not be opened
        self.waiting = False  # no output at all yet
        self.redraw = False  # the output changed under the last frame: draw it again
        self.headless = False
        self.open = True
        self.size = size or (800, 480)
        self._wanted = (size, fullscreen)
        self._devices = devices or Devices()
        self._driver = os.environ.get("SDL_VIDEODRIVER", "")
        if fbdev is not None:
            self._use_framebuffer(fbdev)
            return
        self.headless = not has_display()
        if self.headless:
            os.environ["SDL_VIDEODRIVER"] = "dummy"
            self._open_sdl()
            return
        self.open = False
        self.reopen()

    @property
    def _waits_for_display(self) -> bool:
        return self._driver.lower() == KMSDRM

    def _use_framebuffer(self, device: Path) -> None:
        sink = FramebufferSink(device, self._devices.graphics)
        if pygame.display.get_init():
            pygame.display.quit()
        os.environ["SDL_VIDEODRIVER"] = "dummy"  # SDL only for fonts and surfaces; pixels go to /dev/fbN
        pygame.display.init()
        self.fb = sink
        self.size = sink.size
        self.open = True

    def _open_sdl(self) -> None:
        size, fullscreen = self._wanted
        if pygame.display.get_init():
            pygame.display.quit()
        if not self.headless:
            os.environ["SDL_VIDEODRIVER"] = self._driver  # back from "dummy" if a framebuffer was used
            if self._driver == "":
                del os.environ["SDL_VIDEODRIVER"]
        pygame.display.init()  # not pygame.init(): no audio, no joystick
        flags = pygame.FULLSCREEN if fullscreen and not self.headless else 0
        self.screen = pygame.display.set_mode(size or ((0, 0) if fullscreen else (800, 480)), flags)
        pygame.display.set_caption("eTicket")
        pygame.mouse.set_visible(False)
        self.size = self.screen.get_size()
        self.open = True

    def close(self) -> None:
        """The display went away (HDMI unplugged): release it, keep everything else running."""
        if self.fb is None and self.open:
            pygame.display.quit()
            self.open = False

    def reopen(self) -> None:
        """The display came back, or a display device appeared: open it (its size may have changed).

        On the device (kmsdrm) a display that cannot be opened is never an error: frames go to a framebuffer
        if there is one, else the panel waits (logged once per wait) and this is called again later.

        Raises:
            pygame.error: SDL cannot open a window on a desk (not kmsdrm).
        """
        if (self.fb is not None and not self.fallback) or (self.fb is None and self.open):
            return
        if not self._waits_for_display:
            self._open_sdl()
            return
        reason = self._try_kms()
        if reason is None:
            if self.fb is not None:
                log.info("display opened: leaving the framebuffer %s", self.fb.device)
            self.fb, self.fallback, self.waiting = None, False, False
            return
        if self.fb is not None:  # on the fallback framebuffer already: stay there
            try:
                self._use_framebuffer(self.fb.device)  # (the failed attempt closed SDL's dummy display)
                return
            except FramebufferError as exc:
                reason += f"; {exc}"
                self.fb, self.fallback = None, False
        device = self._devices.framebuffer()
        if device is not None:
            try:
                self._use_framebuffer(device)
            except FramebufferError as exc:
                reason += f"; {exc}"
            else:
                log.warning("%s: drawing on the framebuffer %s instead", reason, device)
                self.fallback, self.waiting = True, False
                return
        if not self.waiting:
            log.warning("waiting for a display (%s)", reason)
        self.waiting, self.open = True, False

    def _try_kms(self) -> str | None:
        """Open SDL's KMSDRM output; None when it worked, else why not."""
        cards = self._devices.drm_cards()
        if not cards:
            return f"no DRM device ({self._devices.dev}/dri/card*)"
        try:
            self._open_sdl()
        except pygame.error as exc:
            pygame.display.quit()
            self.open = False
            return f"SDL cannot open {cards[0]}: {exc}"
        return None

    def describe(self) -> str:
        if self.fb is not None:
            return f"framebuffer {self.fb.device} ({self.fb.geometry.format})"
        if self.waiting:
            return "waiting for a display"
        return "headless" if self.headless else "on " + pygame.display.get_driver()

    def show(self, frame: pygame.Surface, data_dir: Path) -> None:
        """Draw ``frame``.

        Raises:
            FramebufferError: the framebuffer given with ``--fbdev`` cannot be written. (A fallback
                framebuffer that goes away, as when a DRM driver replaces the firmware's, is given up:
                the panel looks for a display again.)
        """
        if self.fb is not None:
            try:
                self.fb.show(frame)
            except FramebufferError as exc:
                if not self.fallback:
                    raise
                log.warning("%s: looking for a display again", exc)
                self.fb, self.fallback, self.open = None, False, False
                self.reopen()
                self.redraw = self.open
            return
        if not self.open:
            return
        self.size = self.screen.get_size()
        self.screen.blit(frame, (0, 0))
        pygame.display.flip()
        if self.headless:
            save_png(frame, data_dir / SCREEN_PNG)


class TokenRefused(RuntimeError):
    """The appliance refused our screen token repeatedly; a restart picks up the current one."""


def run(data_dir: Path, size: tuple[int, int] | None, fullscreen: bool, rotate: int = 0,
        fbdev: Path | None = None, notifier: Notifier | None = None, devices: Devices | None = None,
        diagonal_inches: float | None = None) -> None:
    """Show scenes until SIGTERM/SIGINT or the window is closed.

    Output: ``fbdev`` (a raw framebuffer, for SPI panels), else SDL (KMSDRM on the device, a window on a
    desk). Without any display it runs headless and writes every new frame to ``<data_dir>/screen.png``.
    ``rotate``: degrees clockwise the picture is turned to match how the panel is mounted. ``notifier``:
    systemd's (sd_notify): READY=1 after the first frame, WATCHDOG=1 from this render loop, STATUS= what the
    output is. On the device (``SDL_VIDEODRIVER=kmsdrm``) with no display yet, or one SDL cannot drive, it
    draws on a framebuffer if there is one, else waits for a display (udev, and a look every
    ``DISPLAY_RETRY_SECONDS``) while following the appliance and feeding the watchdog: it never exits for
    want of a display. ``devices``: where displays are looked for (default ``/dev`` and ``/sys/class``).
    ``diagonal_inches``: the panel's size, for the ticket layout (:func:`panel_size_mm`; else its EDID).

    Raises:
        FramebufferError: ``fbdev`` cannot be used (missing, unsupported format).
        TokenRefused: the appliance refused the local kiosk's token three times (``eticket kiosk`` exits with
            75, EX_TEMPFAIL; systemd or the appliance's supervisor restarts it). A claimed screen that was
            revoked does not exit: it shows that it was removed and how to pair it again, until it is.
    """
    panel = _Panel(size, fullscreen, fbdev, devices)
    pygame.font.init()
    changed = threading.Event()
    follower = Follower(data_dir, on_change=changed.set)
    follower.start()
    changed.set()
    plugged: list[bool] = []  # hot-plug news from the watcher thread, applied on this (the SDL) thread

    def on_plug(now: bool) -> None:
        plugged.append(now)
        changed.set()

    sysfs_drm = (devices or Devices()).sysfs / "drm"
    watcher = DrmWatcher(on_plug, sysfs_drm)
    edid = None if fbdev is not None or panel.headless else sysfs_drm  # (a framebuffer has no EDID)
    panel_mm = panel_size_mm(panel.size, diagonal_inches, edid)
    extras = Extras(data_dir)
    minute = time.localtime().tm_min
    expiry = ""  # the pairing scene's "expires in N min" last drawn
    if fbdev is None and not panel.headless:
        watcher.start()
    log.info("kiosk running %s at %dx%d, rotation %d", panel.describe(), *panel.size, rotate)
    notifier = notifier or Notifier()
    next_ping: float | None = None  # None until READY=1 has been sent
    retry_at = time.monotonic() + DISPLAY_RETRY_SECONDS
    status = ""
    try:
        running = True
        while running:
            if follower.refused.is_set():
                raise TokenRefused("the appliance refuses the screen token; exiting so that the service "
                                   "manager starts the kiosk again with the current one")
            for event in (pygame.event.get() if pygame.display.get_init() else ()):  # none while waiting
                if event.type == pygame.QUIT:
                    running = False
                elif event.type == pygame.VIDEORESIZE:
                    changed.set()
            if changed.is_set():
                changed.clear()
                while plugged:
                    if plugged.pop(0):
                        panel.reopen()
                        panel_mm = panel_size_mm(panel.size, diagonal_inches, edid)  # another monitor?
                    else:
                        panel.close()
                if panel.open:
                    removed: dict[str, object] = {"scene": SCENE_SCREEN_REMOVED, "lang": follower.lang}
                    shown = removed if follower.revoked.is_set() else extras.add(follower.state)
                    expiry = pairing_expiry(shown)
                    panel.show(compose(shown, panel.size, rotate, panel_mm), data_dir)
                    if panel.redraw:  # a new output in place of a lost one
                        panel.redraw = False
                        changed.set()
            if (panel.waiting or panel.fallback or status) and panel.describe() != status:
                status = panel.describe()  # for `systemctl status`: waiting, on a fallback, and what came after
                notifier.notify(f"STATUS={status}")
            next_ping = _notify_alive(notifier, next_ping)
            if panel.waiting and time.monotonic() >= retry_at:  # look again, even without udev news
                retry_at = time.monotonic() + DISPLAY_RETRY_SECONDS
                on_plug(True)
            changed.wait(FRAME_INTERVAL_MS / 1000)  # a new state wakes us at once; else poll SDL events
            if expiry and pairing_expiry(extras.add(follower.state)) != expiry:  # one minute less to pair
                changed.set()
            if time.localtime().tm_min != minute:  # the idle clock moves on
                minute = time.localtime().tm_min
                if (follower.state or {}).get("clock"):
                    changed.set()
    finally:
        follower.stop()
        pygame.quit()


def _notify_alive(notifier: Notifier, next_ping: float | None) -> float | None:
    """READY=1 the first time (the first frame is up), then WATCHDOG=1 whenever ``next_ping`` (monotonic
    seconds) has passed; returns the next due time."""
    now = time.monotonic()
    if next_ping is None:
        notifier.notify("READY=1")
        next_ping = now
    if notifier.watchdog_interval is not None and now >= next_ping:
        notifier.notify("WATCHDOG=1")
        next_ping = now + notifier.watchdog_interval
    return next_ping


def _safe_render(state: dict[str, object] | None, size: tuple[int, int]) -> pygame.Surface:
    """Render, falling back to the connecting scene if a scene fails: the screen never goes blank."""
    try:
        return render(state, size)
    except Exception:
        log.exception("scene %r failed to draw; showing a plain scene", (state or {}).get("scene"))
        from .scenes import scene_error

        return scene_error(state, size)

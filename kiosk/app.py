"""The kiosk process: one window (or KMSDRM output, or headless) showing the current scene."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import httpx
import pygame

from .follow import Follower, fetch_state, read_endpoint
from .scenes import render

log = logging.getLogger(__name__)

FRAME_INTERVAL_MS = 100
"""Event-loop tick; a state change is drawn on the next tick (at most 100 ms later)."""
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


def snapshot(data_dir: Path, size: tuple[int, int], out: Path) -> bool:
    """Render what the screen shows now into ``out`` (PNG). Returns False if the appliance was unreachable
    (the PNG then shows the "connecting" scene, as the screen would)."""
    try:
        state = fetch_state(read_endpoint(data_dir))
    except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:
        log.warning("appliance unreachable (%s): snapshot shows the connecting scene", exc)
        state = None
    pygame.font.init()
    save_png(render(state, size), out)
    return state is not None


def run(data_dir: Path, size: tuple[int, int] | None, fullscreen: bool) -> None:
    """Show scenes until SIGTERM/SIGINT or the window is closed.

    Without a display (no X11/Wayland/KMSDRM) it runs headless and writes every new frame to
    ``<data_dir>/screen.png``, so the screen can still be seen on a desk.
    """
    headless = not has_display()
    if headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    pygame.display.init()  # not pygame.init(): no audio, no joystick
    pygame.font.init()
    flags = pygame.FULLSCREEN if fullscreen and not headless else 0
    screen = pygame.display.set_mode(size or ((0, 0) if fullscreen else (800, 480)), flags)
    pygame.display.set_caption("eTicket")
    pygame.mouse.set_visible(False)
    changed = threading.Event()
    follower = Follower(data_dir, on_change=changed.set)
    follower.start()
    changed.set()
    log.info("kiosk running %s at %dx%d", "headless" if headless else "on " + pygame.display.get_driver(),
             *screen.get_size())
    try:
        running = True
        while running:
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    running = False
                elif event.type == pygame.VIDEORESIZE:
                    changed.set()
            if changed.is_set():
                changed.clear()
                frame = _safe_render(follower.state, screen.get_size())
                screen.blit(frame, (0, 0))
                pygame.display.flip()
                if headless:
                    save_png(frame, data_dir / SCREEN_PNG)
            pygame.time.wait(FRAME_INTERVAL_MS)
    finally:
        follower.stop()
        pygame.quit()


def _safe_render(state: dict[str, object] | None, size: tuple[int, int]) -> pygame.Surface:
    """Render, falling back to the connecting scene if a scene fails: the screen never goes blank."""
    try:
        return render(state, size)
    except Exception:
        log.exception("scene %r failed to draw; showing a plain scene", (state or {}).get("scene"))
        return render(None, size)

"""The display's change notification under cancellation: screens that drop while the state changes are
cancelled (Starlette cancels a stream's task when its client disconnects, and anyio delivers that
cancellation again on every loop iteration until the task ends); whatever the moment, the display keeps
changing and waking the other followers."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TypeVar

import pytest

from appliance.display import Display

FOLLOWERS = 5
WAIT_SECONDS = 15.0
"""What a stream waits for a change before its heartbeat."""
RUN_SECONDS = 5.0
T = TypeVar("T")


def _run(coro: Coroutine[object, object, T]) -> T:
    """Run ``coro`` on a fresh loop; fail (instead of hanging as ``asyncio.run`` would) if it overruns
    RUN_SECONDS or leaves tasks behind, such as a waiter stuck on a lock nobody will release."""
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(asyncio.wait_for(coro, RUN_SECONDS))
    except TimeoutError:
        pytest.fail(f"the display locked up: nothing answered within {RUN_SECONDS} s")
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    assert not left, f"tasks left behind, stuck (the display is locked up): {left}"
    loop.close()  # left open (and its stuck tasks alone) when the assertions above fail
    return result


async def _cancel_like_anyio(task: asyncio.Task[object]) -> None:
    """Cancel ``task`` on every loop iteration until it ends, as anyio's cancel scope does."""
    for _ in range(50):
        if task.done():
            return
        task.cancel()
        await asyncio.sleep(0)


async def _storm(offset: int, dropped: int) -> list[BaseException]:
    display = Display(shop="Test", timeout_seconds=60)
    seq = display.snapshot()["seq"]
    followers = [asyncio.create_task(display.async_wait_change(seq, WAIT_SECONDS)) for _ in range(FOLLOWERS)]
    await asyncio.sleep(0)  # every follower is waiting
    change = asyncio.create_task(display.async_clear())
    for _ in range(offset):
        await asyncio.sleep(0)
    await asyncio.gather(*(_cancel_like_anyio(t) for t in followers[:dropped]))  # type: ignore[arg-type]
    # The display must still change, and a follower must still be woken, at once.
    await asyncio.wait_for(change, 1.0)
    fresh = asyncio.create_task(display.async_wait_change(display.snapshot()["seq"], WAIT_SECONDS))
    await asyncio.sleep(0)
    await asyncio.wait_for(display.async_clear(), 1.0)
    state = await asyncio.wait_for(fresh, 1.0)
    assert state is not None and state["scene"] == "idle"
    results = await asyncio.gather(*followers, return_exceptions=True)
    await asyncio.wait_for(display.async_close(), 1.0)
    return [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]


@pytest.mark.parametrize("dropped", [1, 3, FOLLOWERS])
@pytest.mark.parametrize("offset", range(8))
def test_followers_cancelled_around_a_change_never_lock_the_display(offset: int, dropped: int) -> None:
    """A tablet leaves the Wi-Fi ``offset`` loop iterations after the till cleared the screen."""
    errors = _run(_storm(offset, dropped))
    assert errors == []


def test_a_follower_cancelled_while_waiting_leaves_the_display_usable() -> None:
    async def run() -> None:
        display = Display(shop="Test", timeout_seconds=60)
        waiting = asyncio.create_task(display.async_wait_change(0, WAIT_SECONDS))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        other = asyncio.create_task(display.async_wait_change(0, WAIT_SECONDS))
        await asyncio.sleep(0)
        await display.async_clear()
        assert (await asyncio.wait_for(other, 1.0)) is not None

    _run(run())


def test_a_wait_times_out_with_none_and_close_wakes_every_follower() -> None:
    async def run() -> None:
        display = Display(shop="Test", timeout_seconds=60)
        assert await display.async_wait_change(0, 0.01) is None
        followers = [asyncio.create_task(display.async_wait_change(0, WAIT_SECONDS)) for _ in range(3)]
        await asyncio.sleep(0)
        await display.async_close()
        assert await asyncio.wait_for(asyncio.gather(*followers), 1.0) == [None, None, None]
        assert display.closed

    _run(run())


def test_a_sale_shows_its_lines_until_the_receipt_and_a_bound_till_is_a_band() -> None:
    """The customer-display lines (TakePOS's display call) are the ``sale`` scene; the receipt replaces them,
    and the band saying a till may print now rides over every scene (appliance/printer)."""

    async def story() -> None:
        display = Display(shop="Test", timeout_seconds=60)
        await display.async_show_sale(["Croissant       1,20", ""])
        state = display.snapshot()
        assert (state["scene"], state["sale"]) == ("sale", {"lines": ["Croissant       1,20", ""]})
        await display.async_till_bound("192.168.1.30")
        await display.async_show_ticket({"id": "t-1", "url": "http://d/r/x", "total": "6.50", "currency": "EUR"})
        state = display.snapshot()
        assert (state["scene"], state["sale"], state["till_bound"]) == ("ticket", None, None)  # never over a QR
        await display.async_clear()  # the test receipt's QR leaves: the shop owner reads the band at rest
        assert display.snapshot()["till_bound"] == {"address": "192.168.1.30"}
        await display.async_show_sale(["TOTAL          6,50", ""])
        assert display.snapshot()["till_bound"] is None  # the customer's sale is not the owner's band
        await display.async_clear()
        state = display.snapshot()
        assert (state["scene"], state["sale"]) == ("idle", None)
        await display.async_close()

    _run(story())

"""The raw print port (``printer_listen``, 9100 on a device): ESC/POS jobs over TCP, as to a network printer.

One job per connection (escpos-php's ``NetworkPrintConnector``, python-escpos's ``Network`` and raw sockets
all close when done): the job is what arrives until the till closes its side, or until IDLE_END_SECONDS pass
without a byte (a till that keeps the connection open). Status queries (``DLE EOT``, ``GS r``, ``GS I``) are
answered as they arrive, as a healthy printer would (:class:`appliance.escpos.interpreter.Interpreter`).

Bounds (docs/protocol.md §12): MAX_CONNECTIONS jobs received at once, MAX_PER_ADDRESS per till address (more
wait, as in a printer's backlog: MAX_WAITING for up to WAIT_SECONDS); a job of at most
``Limits.max_bytes`` within JOB_SECONDS. A job over a bound, from an address no till allowance covers, or
that makes no receipt ends with one log line; nothing of it is stored or shown, and the port keeps serving.
A printer cannot say why it refuses, so the till only sees its connection closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import TYPE_CHECKING

from ..errors import ApplianceError, PrintJobRefused, TillNotAllowed
from .tills import Address, peer_address

if TYPE_CHECKING:
    from .intake import PrintIntake

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 4
"""Jobs received at once (a shop has a few tills; each buffers up to a job's bytes: 4 x 16 MiB at most)."""
MAX_PER_ADDRESS = 2
MAX_WAITING = 64
"""Connections over those caps wait for a slot, as a printer's backlog does (a till reconnecting at once
must not lose its receipt); beyond this many waiting, or after WAIT_SECONDS, a connection is closed."""
WAIT_SECONDS = 10.0
JOB_SECONDS = 30.0
"""A job must arrive whole within this time from its connection's start (a receipt takes well under 1 s
on a LAN); a slow or endless sender is cut off and its job dropped."""
IDLE_END_SECONDS = 3.0
"""No byte for this long after the first one ends the job, as the till's close would."""
STOP_SECONDS = 5.0
READ_BYTES = 64 * 1024
THREAD_FEED_BYTES = 16 * 1024
"""Chunks larger than this are interpreted in a thread, so a big image never holds up the event loop."""


class PrintListener:
    """Serves the print port on ``sock`` (bound and listening) for ``intake``."""

    def __init__(self, intake: PrintIntake, sock: socket.socket) -> None:
        self._intake = intake
        self._sock = sock
        self._server: asyncio.Server | None = None
        self._active: Counter[Address] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping = False
        self._freed = asyncio.Condition()

    async def async_start(self) -> None:
        """Start accepting connections."""
        self._server = await asyncio.start_server(self._on_connection, sock=self._sock, limit=READ_BYTES)
        host, port = self._sock.getsockname()[:2]
        log.info("printer port open on %s:%d (ESC/POS, one job per connection)", host, port)

    async def async_stop(self) -> None:
        """Stop accepting; jobs being received or converted are dropped (nothing of them was stored): their
        connections are aborted and the conversion worker is stopped, so each handler ends by itself."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._intake.converter.close(busy_too=True)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_SECONDS)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        try:
            address = peer_address(str(peer[0]))
        except (TypeError, ValueError, IndexError):
            writer.close()
            self._tasks.discard(task)
            self._writers.discard(writer)
            return
        try:
            if not await self._async_slot(address):
                return
            self._active[address] += 1
            try:
                await self._serve_job(address, reader, writer)
            finally:
                self._active[address] -= 1
                if self._active[address] <= 0:
                    del self._active[address]
                async with self._freed:
                    self._freed.notify_all()
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            try:  # a peer that reads nothing (its replies queued) must not hold the socket: abort after 1 s
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (TimeoutError, OSError, ConnectionError):
                writer.transport.abort()

    def _full(self, address: Address) -> bool:
        return sum(self._active.values()) >= MAX_CONNECTIONS or self._active[address] >= MAX_PER_ADDRESS

    async def _async_slot(self, address: Address) -> bool:
        """Wait (up to WAIT_SECONDS, at most MAX_WAITING connections) until a job from ``address`` may be
        received; False (logged) when the connection is to be closed instead."""
        if not self._full(address):
            return True
        if self._waiting >= MAX_WAITING:
            log.warning("print connection from %s refused: %d jobs being received and %d waiting (at most %d, "
                        "%d per till, %d waiting)", address, sum(self._active.values()), self._waiting,
                        MAX_CONNECTIONS, MAX_PER_ADDRESS, MAX_WAITING)
            return False
        self._waiting += 1
        try:
            async with self._freed:
                try:
                    await asyncio.wait_for(self._freed.wait_for(lambda: not self._full(address)), WAIT_SECONDS)
                except TimeoutError:
                    log.warning("print connection from %s closed: no slot within %.0f s (%d jobs being "
                                "received)", address, WAIT_SECONDS, sum(self._active.values()))
                    return False
            return True
        finally:
            self._waiting -= 1

    async def _serve_job(self, address: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from ..escpos.interpreter import Interpreter, JobTooLarge

        try:
            till = await self._intake.async_authorize(address)  # None: may be bound if the job prints
        except ApplianceError:
            return  # logged by the intake; a printer has no way to say why
        who = till.id if till is not None else str(address)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOB_SECONDS
        interpreter = Interpreter()
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - loop.time()
            if left <= 0:
                log.warning("print job from %s dropped: not complete within %.0f s (%d bytes so far)",
                            who, JOB_SECONDS, size)
                return
            idle = size > 0 and left > IDLE_END_SECONDS
            try:
                data = await asyncio.wait_for(reader.read(READ_BYTES), IDLE_END_SECONDS if idle else left)
            except TimeoutError:
                if idle:
                    break  # the till went quiet after sending: that was the job
                continue  # the deadline: dropped at the top of the loop
            except (ConnectionError, OSError) as exc:
                log.warning("print job from %s dropped: the connection failed (%s)", who, exc)
                return
            if not data:
                break
            size += len(data)
            try:
                if len(data) > THREAD_FEED_BYTES:
                    reply = await asyncio.to_thread(interpreter.feed, data)
                else:
                    reply = interpreter.feed(data)
            except JobTooLarge as exc:
                log.warning("print job from %s dropped: %s", who, exc)
                return
            chunks.append(data)
            if reply:
                writer.write(reply)
                try:  # a till that never reads its status replies is bounded by the job's deadline too
                    await asyncio.wait_for(writer.drain(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    log.warning("print job from %s dropped: it reads none of its status replies", who)
                    return
                except (ConnectionError, OSError):
                    pass  # the till stopped listening; its job still counts
        if not size:
            return
        if self._stopping:  # the end of this job was the device aborting its connection: not the whole job
            log.warning("print job from %s dropped: the device is stopping (%d bytes received)", who, size)
            return
        try:
            await self._intake.async_accept(b"".join(chunks), till, address, "port 9100")
        except ApplianceError as exc:
            if not isinstance(exc, (PrintJobRefused, TillNotAllowed)):  # those two are logged by the intake
                log.warning("print job from %s not stored: %s", who, exc.detail)

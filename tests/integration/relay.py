"""A WebSocket relay that adds a fixed one-way delay: the network between a Pi and the
service, for the loopback repeater server.

Why: on loopback the repeater server's `speech_started` comes back within a frame of its VAD
deciding, so server-VAD barge-in looks as fast as a VAD on the device; over a real
network it costs a round trip more. Each direction is delayed by `one_way_ms` with
order kept (messages are stamped on arrival and sent when due).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve


class DelayRelay:
    """`with DelayRelay(upstream_base_url, 40) as relay:` then connect to relay.base_url."""

    def __init__(self, upstream_base_url: str, one_way_ms: float) -> None:
        self.upstream = upstream_base_url.rstrip("/")
        self.delay_s = one_way_ms / 1000
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def __enter__(self) -> DelayRelay:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("relay did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, max_size=None, compression=None) as srv:
            self.port = srv.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _pump(self, src, dst) -> None:
        queue: asyncio.Queue[tuple[float, str | bytes]] = asyncio.Queue()

        async def sender() -> None:
            while True:
                due, message = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await dst.send(message)

        task = asyncio.create_task(sender())
        try:
            async for message in src:
                queue.put_nowait((time.monotonic() + self.delay_s, message))
            await asyncio.sleep(self.delay_s)
        finally:
            task.cancel()

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else "/v1/realtime"
        query = path[path.index("?") :] if "?" in path else ""
        headers = {}
        if ws.request and "Authorization" in ws.request.headers:
            headers["Authorization"] = ws.request.headers["Authorization"]
        async with connect(
            self.upstream + query,
            additional_headers=headers,
            max_size=None,
            compression=None,
            proxy=None,
        ) as up:
            tasks = [
                asyncio.create_task(self._pump(ws, up)),
                asyncio.create_task(self._pump(up, ws)),
            ]
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*pending)

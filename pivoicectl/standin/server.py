"""The stand-in Realtime server's socket: handshake, connections, and ways to run it.

The handshake honours the parts of the service contract a client can get wrong: a
missing `Authorization: Bearer ...` is rejected with HTTP 401 (any token is accepted);
`OpenAI-Beta: realtime=v1` gets the service's `beta_api_shape_disabled` error and a
close with code 4000. Each accepted connection is one `session.Session`.

Run it inside a test's event loop (`async with LocalRealtimeServer() as srv`), in a
background thread (`LocalServerThread`, for `run --local`), or blocking
(`serve_forever`, for `pivoicectl local-server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http
import itertools
import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol import server_events as se
from pivoicectl.realtime.protocol.events import DEFAULT_MODEL
from pivoicectl.realtime.protocol.redact import redact
from pivoicectl.standin.log import ConnectionRecord, ServerLog
from pivoicectl.standin.session import Session
from pivoicectl.standin.session_config import new_id
from pivoicectl.standin.settings import DEFAULT_SETTINGS, LocalServerSettings

__all__ = [
    "BETA_CLOSE_CODE",
    "BETA_CLOSE_REASON",
    "REALTIME_PATH",
    "LocalRealtimeServer",
    "LocalServerSettings",
    "LocalServerThread",
    "serve_forever",
]

log = logging.getLogger(__name__)

REALTIME_PATH = "/v1/realtime"
BETA_CLOSE_CODE = 4000
BETA_CLOSE_REASON = "invalid_request_error.beta_api_shape_disabled"


class LocalRealtimeServer:
    """The stand-in Realtime server on an asyncio loop.

    `async with LocalRealtimeServer() as srv:` listens on 127.0.0.1 (port 0 picks a
    free one) and exposes `srv.port`, `srv.base_url` and `srv.url`. `log` records what
    happened; `drop_connections()` simulates a network drop for reconnect tests.
    """

    def __init__(self, settings: LocalServerSettings = DEFAULT_SETTINGS) -> None:
        self.settings = settings
        self.log = ServerLog(settings.log_max_entries)
        self._server: Server | None = None
        self._sessions: dict[int, Session] = {}
        self._next_connection_id = 1
        self._call_numbers = itertools.count(1)
        self._stopped: asyncio.Event | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving; a taken port is a UserError."""
        if self._server is not None:
            return
        self._stopped = asyncio.Event()
        try:
            self._server = await serve(
                self._handle,
                self.settings.host,
                self.settings.port,
                process_request=self._process_request,
                compression=None,
                max_size=self.settings.max_message_bytes,
                logger=logging.getLogger(f"{__name__}.ws"),
            )
        except OSError as exc:
            where = f"{self.settings.host}:{self.settings.port}"
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"failed: {exc}"
            raise UserError(
                f"cannot listen on {where}: the address {reason}",
                hint="pick another port with --port, or 0 for a free one",
            ) from exc
        log.info("local realtime server listening on %s", self.base_url)

    async def stop(self) -> None:
        """Close all connections (1001) and stop listening."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        if self._stopped is not None:
            self._stopped.set()

    async def __aenter__(self) -> LocalRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Serve until `stop()` is called or the task is cancelled."""
        await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    # --- addresses ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when configured with port 0)."""
        if self._server is None:
            raise RuntimeError("the local server is not running")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        """`ws://host:port/v1/realtime`, for `events.realtime_url(model, base_url)`."""
        return f"ws://{self.settings.host}:{self.port}{REALTIME_PATH}"

    @property
    def url(self) -> str:
        """The URL with the default model, as a client would be configured."""
        return f"{self.base_url}?model={DEFAULT_MODEL}"

    @property
    def connection_count(self) -> int:
        """Open WebSocket sessions."""
        return len(self._sessions)

    # --- test hooks ------------------------------------------------------------------------

    async def drop_connections(self, abrupt: bool = True) -> int:
        """Cut every client off; returns how many.

        `abrupt` aborts the TCP connection without a close frame, as a network drop
        does (the client sees 1006); otherwise closes with 1011, as a service restart.
        """
        sessions = list(self._sessions.values())
        for session in sessions:
            if abrupt:
                session.ws.transport.abort()
            else:
                await session.ws.close(1011, "dropped by the local server")
        return len(sessions)

    # --- handshake and connections ------------------------------------------------------

    def _new_call_id(self) -> str:
        """`call_<n>`, numbered across the server's connections, so an output sent to a
        later session for a call of an earlier one is for an unknown call there."""
        return f"call_{next(self._call_numbers)}"

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        split = urlsplit(request.path)
        models = parse_qs(split.query).get("model")
        model = models[0] if models else None
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        connection.pv_connection_id = connection_id  # type: ignore[attr-defined]
        headers = redact({k: v for k, v in request.headers.raw_items()})

        def record(
            outcome: Literal["accepted", "unauthorized", "not_found", "beta_rejected"],
        ) -> None:
            self.log.add_connection(
                ConnectionRecord(connection_id, split.path, model, outcome, headers)
            )

        if split.path.rstrip("/") != REALTIME_PATH:
            record("not_found")
            return _json_response(
                connection,
                http.HTTPStatus.NOT_FOUND,
                se.http_error_body("unknown_url", f"Unknown request URL: GET {split.path}."),
            )
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            record("unauthorized")
            return _json_response(
                connection,
                http.HTTPStatus.UNAUTHORIZED,
                se.http_error_body(
                    None,
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                    "YOUR_KEY).",
                ),
            )
        beta = request.headers.get("OpenAI-Beta", "")
        record("beta_rejected" if "realtime=v1" in beta.replace(" ", "") else "accepted")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        connection_id: int = getattr(ws, "pv_connection_id", 0)
        request = ws.request
        assert request is not None
        beta = request.headers.get("OpenAI-Beta", "").replace(" ", "")
        if "realtime=v1" in beta:
            with contextlib.suppress(ConnectionClosed):
                event = se.stamp(
                    se.error(
                        "beta_api_shape_disabled",
                        "The Realtime Beta API is no longer supported. Please use /v1/realtime "
                        "for the GA API.",
                    ),
                    new_id("event"),
                )
                self.log.add(connection_id, "out", event)
                await ws.send(json.dumps(event))
                await ws.close(BETA_CLOSE_CODE, BETA_CLOSE_REASON)
            return
        model = (parse_qs(urlsplit(request.path).query).get("model") or [DEFAULT_MODEL])[0]
        session = Session(ws, connection_id, model, self.settings, self.log, self._new_call_id)
        self._sessions[connection_id] = session
        try:
            await session.run()
        finally:
            self._sessions.pop(connection_id, None)


def _json_response(
    connection: ServerConnection, status: http.HTTPStatus, body: dict[str, Any]
) -> Response:
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


# --- running outside a test's event loop -------------------------------------------------------


class LocalServerThread:
    """The local server on its own event loop in a daemon thread.

    For `run --local`, where the voice loop owns the main thread's loop, and for tests
    that drive a client synchronously. `start()` returns once the port is bound.
    """

    def __init__(self, settings: LocalServerSettings = DEFAULT_SETTINGS) -> None:
        self.server = LocalRealtimeServer(settings)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 10.0) -> str:
        """Start serving; returns the URL. Raises what binding raised (e.g. UserError)."""
        if self._thread is not None:
            return self.server.url
        self._thread = threading.Thread(target=self._run, name="pv-local-realtime", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("the local realtime server did not start in time")
        if self._error is not None:
            self._thread.join(timeout_s)
            self._thread = None
            raise self._error
        return self.server.url

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            try:
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self.server.serve_forever()

        asyncio.run(main())

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self.server.stop(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout_s)
        thread.join(timeout_s)
        self._thread = None

    def drop_connections(self, abrupt: bool = True, timeout_s: float = 5.0) -> int:
        """`LocalRealtimeServer.drop_connections` from another thread."""
        if self._loop is None:
            return 0
        future = asyncio.run_coroutine_threadsafe(self.server.drop_connections(abrupt), self._loop)
        return future.result(timeout_s)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def port(self) -> int:
        return self.server.port

    def __enter__(self) -> LocalServerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_forever(
    settings: LocalServerSettings = DEFAULT_SETTINGS,
    on_ready: Callable[[LocalRealtimeServer], None] | None = None,
) -> None:
    """Run the local server in the foreground until interrupted (Ctrl-C).

    `on_ready` is called once the port is bound, e.g. to print the URL.
    """

    async def main() -> None:
        server = LocalRealtimeServer(settings)
        await server.start()
        if on_ready is not None:
            on_ready(server)
        await server.serve_forever()

    asyncio.run(main())

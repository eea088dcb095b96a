"""The WebSocket edge: connect, send text, receive text, with errors translated.

The client loop only sees `Connection` (send/recv/close) and three exception types, so
tests can hand it another transport, and the reconnect logic decides on meaning
(`ConnectRejected`: do not retry; `ConnectFailed` / `ConnectionLost`: retry with
backoff) rather than on websockets' exception zoo.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypedDict
from urllib.parse import urlsplit

if TYPE_CHECKING:  # imported at run time only when a connection opens
    from websockets.asyncio.client import ClientConnection


class ConnectFailed(Exception):
    """The connection could not be opened; worth retrying (network, server down)."""


class ConnectRejected(Exception):
    """The server refused us for a reason retrying will not fix (bad key, bad URL)."""


class ConnectionLost(Exception):
    """An open connection ended; `code`/`reason` are the close frame's, if any."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}")
        self.code = code
        self.reason = reason


class Connection(Protocol):
    async def send(self, text: str) -> None: ...

    async def recv(self) -> str: ...

    async def close(self) -> None: ...


Connector = Callable[[str, dict[str, str]], Awaitable[Connection]]
"""`connect(url, headers)`: what the client loop calls to open a connection."""

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Audio deltas can exceed websockets' 1 MiB default."""


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


class _WebSocketConnection:
    def __init__(self, ws: ClientConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        self._ws = ws
        # Looked up once: an import statement in send/recv ran on every message.
        self._closed = ConnectionClosed

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except self._closed as exc:
            raise _lost(exc) from exc

    async def recv(self) -> str:
        try:
            message = await self._ws.recv()
        except self._closed as exc:
            raise _lost(exc) from exc
        return message if isinstance(message, str) else message.decode("utf-8", "replace")

    async def close(self) -> None:
        await self._ws.close()


class _ProxyOverride(TypedDict, total=False):
    """Keyword arguments for `connect` that only some URLs get."""

    proxy: None


def _lost(exc: Exception) -> ConnectionLost:
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return ConnectionLost(rcvd.code, rcvd.reason)
    return ConnectionLost(None, "no close frame (network drop)")


async def connect_websocket(url: str, headers: dict[str, str]) -> Connection:
    """Open a WebSocket to a Realtime server (websockets >= 14 asyncio API)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

    kwargs: _ProxyOverride = {}
    if _is_loopback(url):
        kwargs["proxy"] = None  # websockets >= 15 honours proxy variables, even for 127.0.0.1
    try:
        ws = await connect(
            url,
            additional_headers=headers,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
            open_timeout=10,
            **kwargs,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (400, 401, 403, 404):
            raise ConnectRejected(f"the server answered HTTP {status}") from exc
        raise ConnectFailed(f"the server answered HTTP {status}") from exc
    except InvalidURI as exc:
        raise ConnectRejected(f"bad URL: {exc}") from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
    return _WebSocketConnection(ws)

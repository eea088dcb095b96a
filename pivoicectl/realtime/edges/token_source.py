"""`--token-url`: fetch a short-lived client secret from the owner's backend.

Why: a device in someone's kitchen should not hold the account's API key. Its owner
runs a small backend (e.g. a `/v1/realtime/session` endpoint) that holds the key, asks the
service for an ephemeral client secret, and hands that out. Before every connection
(so a reconnect gets a fresh one; they expire in minutes) `run` asks it:

    POST {token_url}
    Content-Type: application/json
    {"model": "gpt-realtime", "voice": "marin"}

and accepts a JSON answer of any of these shapes (the service's own two, passed
through unchanged, or a minimal one):

    {"value": "ek_...", "expires_at": 1767225600}                        # GA client_secrets
    {"client_secret": {"value": "ek_...", "expires_at": 1767225600}}     # sessions
    {"client_secret": "ek_..."}   or   {"token": "ek_..."}

The value is used as the bearer token and redacted from every output. The request has
a bounded timeout, so a hung backend is a one-line error, not a hung device.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TOKEN_TIMEOUT_S = 5.0


class TokenFailed(Exception):
    """The backend did not hand out a secret (network, timeout, 5xx); may be retried."""


class TokenRejected(TokenFailed):
    """The backend answered, but not with a usable secret (4xx, not JSON, no value)."""


@dataclass(frozen=True)
class ClientSecret:
    value: str
    expires_at: float | None = None

    def __repr__(self) -> str:
        return f"ClientSecret(value='[REDACTED]', expires_at={self.expires_at!r})"


def parse_secret(data: Any) -> ClientSecret:
    """The secret in a backend's JSON answer (see the module docstring for the shapes)."""
    if isinstance(data, dict):
        node: Any = data.get("client_secret", data)
        if isinstance(node, str):
            node = {"value": node}
        if isinstance(node, dict):
            value = node.get("value", node.get("token"))
            if value is None and node is data:
                value = data.get("token")
            if isinstance(value, str) and value.strip():
                expires = node.get("expires_at")
                if not isinstance(expires, int | float) or isinstance(expires, bool):
                    expires = None
                return ClientSecret(value.strip(), None if expires is None else float(expires))
    raise TokenRejected(
        'the answer has no client secret (expected {"value": ...} or '
        '{"client_secret": {"value": ...}})'
    )


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urlsplit(url).hostname or ""
    if host in ("localhost", "::1") or host.startswith("127."):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def fetch_client_secret(
    url: str,
    body: dict[str, Any] | None = None,
    timeout_s: float = DEFAULT_TOKEN_TIMEOUT_S,
) -> ClientSecret:
    """POST `body` as JSON to `url` and return the secret (blocking; run it in a thread)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with _opener(url).open(request, timeout=timeout_s) as response:
            raw = response.read(1_000_000)
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500:
            raise TokenRejected(f"the token URL answered HTTP {exc.code}") from None
        raise TokenFailed(f"the token URL answered HTTP {exc.code}") from None
    except TimeoutError:
        raise TokenFailed(f"the token URL did not answer within {timeout_s:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise TokenFailed(f"the token URL did not answer within {timeout_s:g} s") from None
        raise TokenFailed(f"cannot reach the token URL: {reason}") from None
    except (OSError, ValueError) as exc:
        raise TokenFailed(f"cannot reach the token URL: {exc}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise TokenRejected("the token URL did not answer with JSON") from None
    return parse_secret(data)

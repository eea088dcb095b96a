"""MCP servers the service reaches itself (`[[run.mcp]]`, where = "remote").

Nothing runs on the device for them: the table becomes an `mcp` entry of session.tools
and the service lists the server's tools, calls them and tells the client about it
(shown and traced by the conversation, `session.mcp_events`). What stays here is what
the device decides: the headers (their values read from environment variables, so no
secret sits in config.toml; they are secrets for traces too) and which tools it
approves when the table asks for approval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Approval = Literal["never", "always"]


@dataclass(frozen=True)
class RemoteMcp:
    label: str
    """`server_label`: the table's name."""
    url: str
    require_approval: Approval = "never"
    allowed_tools: tuple[str, ...] | None = None
    """Only these of the server's tools (None: all of them)."""
    approve: frozenset[str] = frozenset()
    """With require_approval = "always": the tools the device approves; others are
    refused."""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    description: str = ""

    def declaration(self) -> dict[str, Any]:
        """The session.tools entry (GA shape)."""
        out: dict[str, Any] = {
            "type": "mcp",
            "server_label": self.label,
            "server_url": self.url,
            "require_approval": self.require_approval,
        }
        if self.allowed_tools is not None:
            out["allowed_tools"] = list(self.allowed_tools)
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.description:
            out["server_description"] = self.description
        return out

    def approved(self) -> frozenset[str] | None:
        """The tools whose approval requests are granted; None: all of them (with
        require_approval = "never" none should even be asked)."""
        return None if self.require_approval == "never" else self.approve

    def secrets(self) -> tuple[str, ...]:
        return tuple(v for v in self.headers.values() if v)

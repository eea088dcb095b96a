"""What one tool call gives back, to the model and to the client.

The model only ever sees `output` (the text of `function_call_output`): a failure is
told to it as a short JSON object `{"error": "..."}` so it can say so or try again,
never as an exception in the client. `ok` and `error` are for the client's records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

ERROR_CHARS = 400
"""An error told to the model is cut to this many characters: a reason, not a log."""


@dataclass(frozen=True)
class ToolOutcome:
    output: str
    """What goes into function_call_output.output (JSON text)."""
    ok: bool
    """False for invalid arguments, a non-zero exit, a timeout, a missing program, an
    unknown tool..."""
    duration_s: float
    """From `Toolbox.call` to the outcome."""
    error: str = ""
    """The short reason when not ok (also inside `output`)."""


@dataclass(frozen=True)
class ToolResult:
    """A tool's own answer, before the tool box adds the time it took."""

    output: str
    error: str = ""

    @classmethod
    def failed(cls, error: str) -> ToolResult:
        """A failure: the reason on one line, cut short, as the JSON the model reads."""
        error = one_line(error, ERROR_CHARS)
        return cls(json.dumps({"error": error}), error)


def one_line(text: str, limit: int) -> str:
    """`text` with its whitespace runs made single spaces, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."

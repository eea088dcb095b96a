"""The one exception type for problems the user must fix.

Everything the user can act on is raised as `UserError` with a one-line message and a
hint; `main` renders it as two short lines and exits with `exit_code` (2 by default,
the usage-error code). Any other exception is a bug: it is shown with a traceback only
under `--debug`.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: a one-line reason and what to do about it."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

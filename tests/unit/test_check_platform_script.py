"""scripts/check-platform.sh reads its arguments before it touches anything: a bad one
is one line on stderr with the usage and exit 2 (CI calls it with a computed flavour)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check-platform.sh"


def check_platform(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        ((), {}, "FLAVOUR missing"),
        (("trixie-riscv64",), {}, "unknown FLAVOUR 'trixie-riscv64'"),
        (("--fast", "bookworm"), {}, "unknown option '--fast'"),
        (("bookworm", "trixie-amd64"), {}, "one FLAVOUR only"),
        (
            ("bookworm",),
            {"PIVOICECTL_CHECK_TESTS": "some"},
            "PIVOICECTL_CHECK_TESTS must be all or unit (got 'some')",
        ),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(args, env, said):
    result = check_platform(*args, **env)
    assert result.returncode == 2, result
    first, usage = result.stderr.splitlines()
    assert first == f"check-platform: {said}"
    assert usage.startswith("usage: ") and "trixie-amd64, trixie-arm64, bookworm" in usage
    assert result.stdout == ""


def test_help_names_every_flavour_and_exits_0():
    result = check_platform("--help")
    assert result.returncode == 0
    assert "trixie-amd64, trixie-arm64, bookworm" in result.stdout

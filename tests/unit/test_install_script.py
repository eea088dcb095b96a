"""scripts/install-system-deps.sh refuses a PipeWire generation the release cannot give.

Only the refusals run here: they happen before anything is installed.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO, clean_env


def _run(tmp_path, codename: str, gen: str) -> subprocess.CompletedProcess[str]:
    release = tmp_path / "os-release"
    release.write_text(f"ID=debian\nVERSION_CODENAME={codename}\n")
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "install-system-deps.sh")],
        env=clean_env(PIVOICECTL_OS_RELEASE=str(release), PIVOICECTL_PW_GEN=gen),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("gen", ["bookworm", "backports"])
def test_a_bookworm_generation_on_trixie_is_a_one_line_error(tmp_path, gen):
    proc = _run(tmp_path, "trixie", gen)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs Debian bookworm, this is 'trixie'" in lines[0]
    assert "PIVOICECTL_PW_GEN=system" in lines[0]


def test_an_unknown_generation_is_a_one_line_error(tmp_path):
    proc = _run(tmp_path, "bookworm", "newest")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: PIVOICECTL_PW_GEN must be auto, backports, bookworm or system (got 'newest')"
    ]

"""The package works installed, not only from this checkout (pip install . or pipx).

Why: the echo-cancel templates once lived outside the package directory, so an
installed pivoicectl worked but tests against it failed to import them; and a package
missing from the build would only show on a user's machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, clean_env


def test_an_installed_copy_has_every_module_and_renders_both_templates(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), "."],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=240,
    )
    here = {p.relative_to(REPO).as_posix() for p in (REPO / "pivoicectl").rglob("*.py")}
    there = {p.relative_to(target).as_posix() for p in (target / "pivoicectl").rglob("*.py")}
    assert here - there == set()
    script = (
        "import pivoicectl, pivoicectl.core.echo_config as e\n"
        "print(pivoicectl.__file__)\n"
        "for v in ('1.4.2', '0.3.65'):\n"
        "    print(e.EchoConfig('mic', 'spk', v, e.DEFAULT_AEC_ARGS).render().splitlines()[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,  # not the checkout, whose pivoicectl/ would shadow the installed one
        env=clean_env(PYTHONPATH=str(target)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert Path(out[0]).is_relative_to(target)
    assert "template echo-cancel-1.x" in out[1]
    assert "template echo-cancel-0.3" in out[2]

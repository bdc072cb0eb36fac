"""The house rules CI enforces, as tests: `ruff check`, `snakefmt --check` and
`snakemake --lint` are clean (so `python -m pytest`, the README's test command, fails on
them too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("cmd", [
    [str(BIN / "ruff"), "check", "."],
    [str(BIN / "snakefmt"), "--check", "."],
    [sys.executable, "-m", "snakemake", "--lint"],
], ids=["ruff", "snakefmt", "snakemake-lint"])
def test_tree_is_clean(cmd):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

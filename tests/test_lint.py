"""The habits that keep the code as it is: ruff and mypy, as configured in pyproject.toml, find nothing.

Both tools are pinned in the ``test`` extra, so a new release cannot turn the
suite red on its own; raise the pins deliberately and fix what they find.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    done = _run("ruff", "check", "--no-cache", "failoverd", "tests", "bench", "fuzz", "scripts")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_mypy_finds_nothing_in_the_package() -> None:
    done = _run("mypy")  # files and settings from [tool.mypy]
    assert done.returncode == 0, done.stdout + done.stderr

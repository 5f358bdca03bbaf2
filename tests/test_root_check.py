"""The daemons refuse to run without root (exit 77) while -h, -v and -n work
for anyone. Runs the real programs as nobody through setpriv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from failoverd.cli.exitcodes import EX_NOPERM

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to become nobody"
)

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(program: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NOBODY, sys.executable, "-m", f"failoverd.programs.{program}", *args],
        capture_output=True, text=True, timeout=60, cwd="/",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"},
    )


@pytest.mark.parametrize(
    "program, args",
    [
        ("failoverd", ["10.0.0.1", "lo:10.0.0.2"]),
        ("failoverd", ["-d", "10.0.0.1", "lo:10.0.0.2"]),
        ("failoverd", ["-x", "10.0.0.1", "lo:10.0.0.2"]),
        ("heartbeatd", ["10.0.0.255"]),
        ("heartbeatd", ["-d", "-m", "alive", "10.0.0.255"]),
    ],
)
def test_daemons_refuse_without_root(tmp_path: Path, program: str, args: list[str]) -> None:
    tmp_path.chmod(0o777)
    pid_file = tmp_path / "x.pid"
    result = as_nobody(program, ["--pid-file", str(pid_file), *args])
    assert result.returncode == EX_NOPERM
    assert result.stderr.startswith(f"{program}: must be run as root: ")
    assert "running as uid 65534" in result.stderr
    assert not pid_file.exists()


def test_usage_errors_come_before_the_root_check() -> None:
    result = as_nobody("failoverd", ["-p", "0", "10.0.0.1", "lo:10.0.0.2"])
    assert result.returncode == 64
    assert "Invalid port" in result.stderr


@pytest.mark.parametrize("program", ["failoverd", "heartbeatd"])
@pytest.mark.parametrize("flag", ["-h", "--help", "-v", "--version"])
def test_help_and_version_work_for_anyone(program: str, flag: str) -> None:
    result = as_nobody(program, [flag])
    assert result.returncode == 0, result.stderr
    assert program in result.stdout


def test_no_run_works_for_anyone_and_warns(tmp_path: Path) -> None:
    result = as_nobody(
        "failoverd",
        ["-n", "-p", "16999", "--hook-dir", str(tmp_path / "none"), "--state-dir", str(tmp_path / "state"),
         "10.0.0.1", "lo:10.0.0.2"],
    )
    assert "warn  not running as root; failoverd itself must run as root" in result.stdout
    # The test's directory is root's alone: nobody cannot look, and is told so.
    assert f"warn  {tmp_path / 'state'}: cannot be checked without root" in result.stdout
    assert "result:" in result.stdout

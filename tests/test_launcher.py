"""ipfailover, the boot-time launcher: hostconfig + environment → the daemon's
command line. Runs the real program in a subprocess with a controlled
environment; --dry-run shows the command, and one test lets it really exec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "-m", "failoverd.programs.ipfailover", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def hostconfig(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostconfig"
    path.write_text(text)
    return path


def test_backup_configuration_starts_failoverd(tmp_path: Path) -> None:
    path = hostconfig(
        tmp_path,
        'FAILOVER_PEER_IP=10.100.0.10\nFAILOVER_PEER_IP_PAIRS="en0:192.13.2.2/16 en1:1.2.3.4/24"\n'
        "FAILOVER_EMAIL_RECIPIENT=ops@example.com\n",
    )
    result = run(["--hostconfig", str(path), "--dry-run"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"FAILOVER_EMAIL_RECIPIENT=ops@example.com {VENV_BIN}/failoverd "
        "10.100.0.10 en0:192.13.2.2/16 en1:1.2.3.4/24"
    )


def test_master_configuration_starts_heartbeatd_with_options(tmp_path: Path) -> None:
    path = hostconfig(
        tmp_path,
        'FAILOVER_BCAST_IPS="10.0.0.255 100.0.255.255"\n'
        "HEARTBEATD_OPTIONS=\"--key-file '/etc/failover d/key' -p 1700\"\n",
    )
    result = run(["--hostconfig", str(path), "--dry-run", "--", "-x"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{VENV_BIN}/heartbeatd --key-file '/etc/failover d/key' -p 1700 -x 10.0.0.255 100.0.255.255"
    )


def test_environment_alone_and_overriding_the_file(tmp_path: Path) -> None:
    path = hostconfig(tmp_path, "FAILOVER_PEER_IP=10.0.0.1\nFAILOVER_PEER_IP_PAIRS=eth0:10.0.1.1\n")
    result = run(["--hostconfig", str(path), "--dry-run"], {"FAILOVER_PEER_IP": "10.0.0.9"})
    assert result.stdout.split()[-2:] == ["10.0.0.9", "eth0:10.0.1.1"]
    empty = hostconfig(tmp_path, "# nothing\n")
    result = run(
        ["--hostconfig", str(empty), "--dry-run"],
        {"FAILOVER_BCAST_IPS": "192.168.7.255", "FAILOVER_EMAIL_RECIPIENT": "a@example.com"},
    )
    assert result.returncode == 0
    # Already in the environment, so it reaches NotifyFailover without being added.
    assert result.stdout.strip() == f"{VENV_BIN}/heartbeatd 192.168.7.255"


def test_nothing_configured_starts_nothing(tmp_path: Path) -> None:
    path = hostconfig(tmp_path, "AFPSERVER=-NO-\n")
    result = run(["--hostconfig", str(path), "--dry-run"])
    assert result.returncode == 0
    assert "nothing to start" in result.stdout
    demanded = run(["--hostconfig", str(path), "--role", "backup", "--dry-run"])
    assert demanded.returncode == 78
    assert "FAILOVER_PEER_IP" in demanded.stderr


def test_both_roles_need_a_choice(tmp_path: Path) -> None:
    path = hostconfig(
        tmp_path, "FAILOVER_PEER_IP=10.0.0.1\nFAILOVER_PEER_IP_PAIRS=eth0:10.0.1.1\nFAILOVER_BCAST_IPS=10.0.0.255\n"
    )
    result = run(["--hostconfig", str(path), "--dry-run"])
    assert result.returncode == 78
    assert "--role" in result.stderr
    chosen = run(["--hostconfig", str(path), "--role", "master", "--dry-run"])
    assert chosen.returncode == 0
    assert chosen.stdout.strip() == f"{VENV_BIN}/heartbeatd 10.0.0.255"


@pytest.mark.parametrize(
    "text, message",
    [
        ("FAILOVER_PEER_IP=10.0.0.1\n", "FAILOVER_PEER_IP_PAIRS"),
        ("FAILOVER_PEER_IP_PAIRS=eth0:10.0.1.1\n", "FAILOVER_PEER_IP (the master's private address)"),
        ('FAILOVER_PEER_IP="10.0.0.1 10.0.0.2"\nFAILOVER_PEER_IP_PAIRS=eth0:10.0.1.1\n', "single address"),
        ("FAILOVER_BCAST_IPS=10.0.0.255\nHEARTBEATD_OPTIONS=\"--key-file 'x\"\n", "HEARTBEATD_OPTIONS"),
        ("FAILOVER_PEER_IP=10.0.0.1\nFAILOVER_PEER_IP_PAIRS=eth0:10.0.1.1 eth1:10.0.2.1\n", "line 2"),
    ],
)
def test_configuration_errors(tmp_path: Path, text: str, message: str) -> None:
    result = run(["--hostconfig", str(hostconfig(tmp_path, text)), "--dry-run"])
    assert result.returncode == 78
    assert result.stderr.startswith("ipfailover: ")
    assert message in result.stderr


def test_missing_explicit_hostconfig(tmp_path: Path) -> None:
    result = run(["--hostconfig", str(tmp_path / "absent"), "--dry-run"])
    assert result.returncode == 78
    assert "cannot read" in result.stderr


def test_unknown_option_is_a_usage_error() -> None:
    result = run(["--bogus"])
    assert result.returncode == 64


def test_really_execs_the_daemon(tmp_path: Path) -> None:
    path = hostconfig(tmp_path, "FAILOVER_PEER_IP=10.0.0.1\nFAILOVER_PEER_IP_PAIRS=eth0:10.0.1.1\n")
    # -v makes the exec'ed failoverd print its version and exit at once.
    result = run(["--hostconfig", str(path), "--", "-v"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "failoverd 0.1.0"

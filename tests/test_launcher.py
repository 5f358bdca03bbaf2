"""ipfailover, the boot-time launcher: hostconfig + environment → the daemon's
command line. Runs the real program in a subprocess with a controlled
environment; --dry-run shows the command, and one test lets it really exec."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from failoverd.cli import options
from failoverd.programs import failoverctl

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


# --- exit codes and the systemd units --------------------------------------------------
#
# The units restart ipfailover (and the daemon it becomes) on failure, except on
# 64, 77 and 78: a configuration problem must end in one of those, never in a
# traceback (exit 1) that systemd would restart every two seconds for ever.

GOOD = b"FAILOVER_PEER_IP=10.0.0.1\nFAILOVER_PEER_IP_PAIRS=eth0:10.0.1.1\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (GOOD.replace(b"10.0.1.1", b"10.0.1.1\x00"), "line 2: NUL byte at column 37 (a damaged file?)"),
        (b"\x00" * 64, "line 1: NUL byte at column 1 (a damaged file?)"),
        (GOOD + b"FAILOVER_EMAIL_RECIPIENT=ops@caf\xe9.example\n", "line 3: byte 0xE9 at column 33 is not UTF-8"),
        (GOOD + b'FAILOVERD_OPTIONS="--key-file /etc/k\n', "line 3: FAILOVERD_OPTIONS: unterminated double quote"),
        (GOOD + b"FAILOVER_X='" + b"x" * 5000 + b"'\n", "line 3: line is 5013 bytes long, more than 4096"),
    ],
)
def test_a_damaged_hostconfig_is_a_configuration_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "hostconfig"
    path.write_bytes(content)
    # Not --dry-run: the way the units run it (-v: had it reached the exec, the daemon would only print its version).
    result = run(["--hostconfig", str(path), "--role", "backup", "--", "-v"])
    assert result.returncode == 78, result.stderr
    assert result.stderr == f"ipfailover: {path}, {message}\n"
    assert result.stdout == ""


def test_a_variable_that_is_not_utf8_in_the_environment_is_a_configuration_error(tmp_path: Path) -> None:
    path = hostconfig(tmp_path, "FAILOVER_PEER_IP_PAIRS=eth0:10.0.1.1\n")
    result = subprocess.run(
        [sys.executable, "-m", "failoverd.programs.ipfailover", "--hostconfig", str(path), "--dry-run"],
        env={b"PATH": os.fsencode(os.environ.get("PATH", "/usr/bin:/bin")), b"LANG": b"C.UTF-8",
             b"FAILOVER_PEER_IP": b"10.0.0.\xff"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 78, result.stderr
    assert result.stderr == "ipfailover: FAILOVER_PEER_IP in the environment is not UTF-8: '10.0.0.\\udcff'\n"


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_a_configuration_too_large_for_a_command_line_is_a_configuration_error(tmp_path: Path) -> None:
    # 100 exported variables of 2000 bytes, against the 128 KiB that a 512 KiB
    # stack limit leaves for the daemon's arguments and environment.
    lines = b"".join(b"FAILOVER_X%d='%s'\n" % (i, b"x" * 2000) for i in range(100))
    path = tmp_path / "hostconfig"
    path.write_bytes(GOOD + lines)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    result = subprocess.run(
        ["prlimit", "--stack=524288", sys.executable, "-m", "failoverd.programs.ipfailover",
         "--hostconfig", str(path), "--", "-v"],
        env=base, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 78, result.stderr
    assert "are too large (Argument list too long)" in result.stderr


@pytest.fixture
def fake_daemons(tmp_path: Path) -> Path:
    """A bin directory whose python is this one's interpreter outside the venv,
    so that ipfailover starts the ``failoverd`` and ``heartbeatd`` placed beside it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(os.path.realpath(sys.executable))
    # Reports the signals it was started with ignored (SigIgn, hexadecimal), then exits 0.
    daemon = bin_dir / "failoverd"
    daemon.write_text("#!/bin/sh\nexec grep '^SigIgn:' /proc/self/status\n")
    daemon.chmod(0o755)
    broken = bin_dir / "heartbeatd"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    return bin_dir


def _run_with(bin_dir: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    checkout = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [str(bin_dir / "python"), "-m", "failoverd.programs.ipfailover", *args],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(checkout)},
        capture_output=True, text=True, timeout=60,
    )


def test_the_daemon_starts_with_sighup_ignored_until_it_handles_it(tmp_path: Path, fake_daemons: Path) -> None:
    # systemctl reload (SIGHUP) just after a start must not kill the daemon
    # before its handler is in place: systemd counts that as a clean exit.
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        pytest.skip("SIGHUP is ignored here already (nohup?), so the test would prove nothing")
    path = hostconfig(tmp_path, GOOD.decode())
    result = _run_with(fake_daemons, ["--hostconfig", str(path)])
    assert result.returncode == 0, result.stderr
    ignored = int(result.stdout.split()[1], 16)
    assert ignored & (1 << (signal.SIGHUP - 1))
    assert not ignored & (1 << (signal.SIGTERM - 1))


def test_a_daemon_that_cannot_be_started_is_unavailable(tmp_path: Path, fake_daemons: Path) -> None:
    path = hostconfig(tmp_path, "FAILOVER_BCAST_IPS=10.0.0.255\n")
    result = _run_with(fake_daemons, ["--hostconfig", str(path)])
    assert result.returncode == 69
    assert result.stderr == f"ipfailover: cannot start {fake_daemons}/heartbeatd: No such file or directory\n"


UNITS = Path(__file__).resolve().parent.parent / "systemd"


def _unit(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (UNITS / f"{name}.service").read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize(
    "unit, role, parse, arguments",
    [
        ("failoverd", "backup", options.parse_backup, ["10.0.0.1", "eth0:10.0.1.1"]),
        ("heartbeatd", "master", options.parse_master, ["10.0.0.255"]),
    ],
)
def test_the_units_the_daemons_and_failoverctl_agree_on_the_control_socket(unit, role, parse, arguments) -> None:
    settings = _unit(unit)
    command = shlex.split(settings["ExecStart"][0])
    socket_path = Path(command[command.index("--control-socket") + 1])
    assert socket_path.parent == Path("/run") / settings["RuntimeDirectory"][0]
    # A daemon started by hand, without --control-socket, lands there too ...
    assert parse(arguments).control_socket == socket_path
    # ... and failoverctl looks there first.
    assert failoverctl.SOCKETS[role][0] == socket_path
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    ipfailover = VENV_BIN / "ipfailover"
    if not ipfailover.exists():
        pytest.skip("ipfailover is not installed in this environment")
    for name in ("failoverd", "heartbeatd"):
        text = (UNITS / f"{name}.service").read_text().replace("/usr/local/bin/ipfailover", str(ipfailover))
        (tmp_path / f"{name}.service").write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "failoverd.service"), str(tmp_path / "heartbeatd.service")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", ["failoverd", "heartbeatd"])
def test_the_units_are_notify_services_with_a_watchdog_and_hardened_beyond_the_old_exposure(
    tmp_path: Path, name: str
) -> None:
    """The units were at exposure 4.6 ("OK") before notify, watchdog and the
    issue 11 hardening; systemd's own scoring must say they are better now."""
    text = (UNITS / f"{name}.service").read_text()
    settings = _unit(name)
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert settings["WatchdogSec"] == ["10s"] and settings["KillMode"] == ["mixed"]
    assert settings["CapabilityBoundingSet"] == ["CAP_NET_ADMIN CAP_NET_RAW"]
    (tmp_path / f"{name}.service").write_text(text.replace("/usr/local/bin/ipfailover", str(VENV_BIN / "ipfailover")))
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(tmp_path / f"{name}.service")],
                            capture_output=True, text=True, timeout=120)
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert score is not None, result.stdout + result.stderr
    assert float(score.group(1)) <= 3.0, result.stdout

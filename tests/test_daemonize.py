"""Moving to the background (failoverd.cli.daemonize), driven through a small
program that does what the daemons do: take the pid file, daemonize, then
serve until SIGTERM. The runtime is not needed for any of it.

Every wait is bounded; a daemon left behind by a failing test is killed by
its recorded pid in the fixture's finally block.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from failoverd.cli.daemonize import AlreadyRunning, PidFile
from failoverd.cli.exitcodes import EX_CONFIG, EX_UNAVAILABLE, ProgramError

PROBE = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from failoverd.cli.daemonize import PidFile, daemonize
    from failoverd.cli.exitcodes import ProgramError

    pid_path, report = Path(sys.argv[1]), Path(sys.argv[2])
    pid_file = PidFile(pid_path)
    try:
        stale = pid_file.acquire()
    except ProgramError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        sys.exit(exc.status)
    launcher = os.getpid()
    daemonize(pid_file)
    try:
        info = {
            "pid": os.getpid(), "ppid": os.getppid(), "launcher": launcher,
            "sid": os.getsid(0), "stale": stale, "cwd": os.getcwd(),
            "umask": os.umask(0o022),
            "stdio": [os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)],
            "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
            "pid_fd": pid_file.fileno(), "tty": None,
        }
        try:
            os.close(os.open("/dev/tty", os.O_RDONLY))
            info["tty"] = "controlling terminal present"
        except OSError:
            info["tty"] = "none"
        tmp = report.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.rename(report)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        (report.parent / "stopped").write_text(str(os.getpid()))
    """
)


def wait_for(predicate, timeout: float = 15.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def alive(pid: int) -> bool:
    """Running and not a zombie waiting for a reaper we do not control."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


@pytest.fixture
def probe(tmp_path: Path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    report = tmp_path / "report.json"
    pid_path = tmp_path / "probe.pid"
    started: list[int] = []

    def launch() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), str(pid_path), str(report)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )

    def read_report() -> dict:
        info = json.loads(wait_for(lambda: report.exists() and report.read_text()))
        started.append(info["pid"])
        return info

    try:
        yield launch, read_report, pid_path, tmp_path
    finally:
        for pid in started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_detaches_records_pid_refuses_second_and_stops_on_sigterm(probe) -> None:
    launch, read_report, pid_path, tmp_path = probe
    first = launch()
    # The launcher returns at once: the daemon carries on without it.
    assert first.returncode == 0, first.stderr
    info = read_report()
    pid = info["pid"]
    assert alive(pid)
    assert pid != info["launcher"] and info["ppid"] != info["launcher"]
    assert info["sid"] != os.getsid(0), "daemon must lead no session of ours"
    assert info["tty"] == "none"
    assert info["stdio"] == ["/dev/null"] * 3
    assert info["cwd"] == "/"
    assert info["umask"] == 0o022
    # Only stdio and the locked pid file survive (the listing itself adds one, the lowest free number).
    assert len(set(info["fds"]) - {0, 1, 2, info["pid_fd"]}) <= 1
    assert info["stale"] is None
    assert pid_path.read_text() == f"{pid}\n"

    second = launch()
    assert second.returncode == EX_UNAVAILABLE
    assert f"already running (pid {pid}, holding pid file {pid_path})" in second.stderr
    assert alive(pid) and pid_path.read_text() == f"{pid}\n"

    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid))
    assert (tmp_path / "stopped").read_text() == str(pid)
    assert not pid_path.exists(), "a clean stop removes the pid file"


def test_stale_pid_file_is_taken_over(probe) -> None:
    launch, read_report, pid_path, _ = probe
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=30)
    pid_path.write_text(f"{dead.pid}\n")
    result = launch()
    assert result.returncode == 0, result.stderr
    info = read_report()
    assert info["stale"] == dead.pid
    assert pid_path.read_text() == f"{info['pid']}\n"
    os.kill(info["pid"], signal.SIGTERM)
    wait_for(lambda: not alive(info["pid"]))
    assert not pid_path.exists()


def test_pid_file_lock_within_one_process(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    holder = PidFile(path)
    assert holder.acquire() is None
    holder.write(os.getpid())
    other = PidFile(path)
    with pytest.raises(AlreadyRunning) as caught:
        other.acquire()
    assert caught.value.pid == os.getpid()
    holder.release()
    assert not path.exists()
    assert other.acquire() is None
    other.release()


def test_pid_file_in_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(Exception) as caught:
        PidFile(tmp_path / "no" / "such.pid").acquire()
    assert getattr(caught.value, "status", None) == 78
    assert "cannot open pid file" in str(caught.value)


# --- the pid file is root's, in a directory only root can write ----------------------


def test_a_pid_file_that_is_a_link_is_refused_at_start_and_its_target_untouched(probe) -> None:
    launch, _, pid_path, tmp_path = probe
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    pid_path.symlink_to(victim)
    result = launch()
    assert result.returncode == EX_CONFIG, result.stderr
    assert f"probe: refusing pid file {pid_path}: a symbolic link (state files are never followed)" in result.stderr
    assert victim.read_text() == "precious\n"
    assert pid_path.is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership rules need root")
@pytest.mark.parametrize("mode", [0o777, 0o1777])
def test_a_pid_file_in_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "run"
    shared.mkdir()
    shared.chmod(mode)
    pid_file = PidFile(shared / "failoverd.pid")
    with pytest.raises(ProgramError) as caught:
        pid_file.acquire()
    assert caught.value.status == EX_CONFIG
    assert str(caught.value).startswith(
        f"refusing pid file {shared}/failoverd.pid: directory {shared} is writable by group or others (mode {mode:04o})"
    )
    assert not (shared / "failoverd.pid").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership rules need root")
def test_a_pid_file_another_user_created_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "failoverd.pid"
    path.write_text("")
    os.chown(path, 65534, 65534)
    with pytest.raises(ProgramError, match=r"refusing pid file .*failoverd\.pid: owned by uid 65534, not root"):
        PidFile(path).acquire()

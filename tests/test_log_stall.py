"""A log target that stops accepting lines must not freeze the daemon.

Issue 9, part 5: with a stalled journald (a syslog socket nobody reads) a
backup took over, then blocked in a log write, answered no `failoverctl
status` and ignored SIGTERM, keeping the address when the master returned.

Testing charter: a real failoverd (the installed program) runs in a network
namespace of its own, one end of a veth pair (removed whatever happens, see
conftest's ``pair``), with a master that never sends, so it takes over a
test address there. Its log target is real and stalled before it starts: an
AF_UNIX datagram socket standing in for /dev/log whose queue the test fills
and does not read, or a pipe as its stderr, filled to the brim. Every wait is
bounded; nothing asserts on speed. The daemon is killed in a ``finally`` if a
test fails while it runs. The terminal test uses a real pseudo-terminal,
stopped with ^S as a user would.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _netns import Pair, addresses_on

from failoverd.cli import logsetup
from failoverd.lab.pair import program
from failoverd.lab.pytest_plugin import requires_netns
from failoverd.runtime import control

ADDRESS = "10.77.0.10/24"
MASTER = "10.77.9.1"
LOST = "log messages lost (log target not accepting)"
# Generous bounds for a loaded machine; a daemon that is frozen reaches them, a live one never does.
ANSWER_BOUND = 30.0
STOP_BOUND = 30.0


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting until {what}")
        time.sleep(0.05)


def daemon_argv(workdir: Path, *options: str) -> list[str]:
    hooks = workdir / "hooks"
    hooks.mkdir(exist_ok=True)
    os.chmod(hooks, 0o755)
    return [
        program("failoverd"), *options,
        "--interval", "0.1",
        "--hook-dir", str(hooks),
        "--hook-timeout", "2",
        "--notify-command", "/bin/true",
        "--pid-file", str(workdir / "failoverd.pid"),
        "--control-socket", str(workdir / "failoverd.sock"),
        "--state-dir", str(workdir / "state"),
        MASTER, f"va:{ADDRESS}",
    ]


class Daemon:
    """A failoverd started in the namespace: the process itself (``-x``, ``-d``) or, in
    background mode, the daemon the launcher left behind (found through its pid file)."""

    def __init__(self, pair: Pair, workdir: Path, argv: list[str], *, background: bool = False, **popen) -> None:
        self.workdir = workdir
        self.launcher = subprocess.Popen(["ip", "netns", "exec", pair.a, *argv], stdin=subprocess.DEVNULL, **popen)
        self.pid: int | None = None if background else self.launcher.pid
        if background:
            assert self.launcher.wait(ANSWER_BOUND) == 0, "the launcher did not move failoverd to the background"
            # The daemon writes its pid once it is detached, maybe after the launcher exited.
            pid_file = workdir / "failoverd.pid"
            wait_until(lambda: pid_file.read_text().strip().isdigit(), ANSWER_BOUND, "the daemon wrote its pid file")
            self.pid = int(pid_file.read_text())

    def alive(self) -> bool:
        assert self.pid is not None
        if self.pid == self.launcher.pid:
            return self.launcher.poll() is None
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    def answers(self) -> bool:
        assert self.alive(), f"failoverd exited (status {self.launcher.poll()})"
        try:
            control.request(self.workdir / "failoverd.sock", "ping", timeout=1.0)
        except control.ControlError:
            return False
        return True

    def terminate(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGTERM)
        wait_until(lambda: not self.alive(), STOP_BOUND, "failoverd stopped on SIGTERM")

    def kill(self) -> None:
        """Clean-up after a failed test: our daemon only, by its pid."""
        if self.pid is not None and self.alive():
            os.kill(self.pid, signal.SIGKILL)
        if self.launcher.poll() is None:
            self.launcher.kill()
        self.launcher.wait(10)


@contextmanager
def running(pair: Pair, workdir: Path, argv: list[str], **kwargs) -> Iterator[Daemon]:
    daemon = Daemon(pair, workdir, argv, **kwargs)
    try:
        yield daemon
    finally:
        daemon.kill()


def status(workdir: Path) -> dict:
    """What `failoverctl status --json` prints (the real program, bounded)."""
    done = subprocess.run(
        [program("failoverctl"), "status", "--json", "--socket", str(workdir / "failoverd.sock"), "--timeout", "5"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def takes_over_and_answers_while_stalled(pair: Pair, workdir: Path, daemon: Daemon) -> None:
    """The daemon's half of the tests: it works, although nothing it logs gets anywhere."""
    wait_until(daemon.answers, ANSWER_BOUND, "failoverd answers on its control socket with its log target stalled")
    wait_until(lambda: status(workdir)["state"] == "failed_over", ANSWER_BOUND, "failoverd took over")
    assert status(workdir)["held"] == [f"va:{ADDRESS}"]
    assert ADDRESS in addresses_on(pair.a, "va")
    # The stall must outlast the target's send timeout for a line to be lost at all: a quick
    # takeover once ended within the first line's wait, and nothing was lost to count.
    time.sleep(logsetup.SEND_TIMEOUT + 0.5)


class Collector:
    """Reads a log target from a thread once the test lets it flow again."""

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self.chunks: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Collector:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = self._read()
            except (TimeoutError, BlockingIOError):
                continue
            if not chunk:
                return
            self.chunks.append(chunk)

    def stop(self) -> bytes:
        self._stop.set()
        self._thread.join(10)
        return b"".join(self.chunks)


def fill_datagram_socket(path: str) -> int:
    """Send to ``path`` without waiting until its queue takes no more; return how many went in."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
        filler.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        filler.connect(path)
        filler.setblocking(False)
        for sent in range(100_000):
            try:
                filler.send(b"<14>filler: nobody reads this\x00")
            except BlockingIOError:
                return sent
    raise AssertionError("the syslog socket never filled up")


@requires_netns
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["-x", "background"])
def test_stalled_syslog_socket_does_not_freeze_the_daemon(pair: Pair, tmp_path: Path, mode: str) -> None:
    path = str(tmp_path / "log")
    background = mode == "background"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(path)
        filled = fill_datagram_socket(path)
        assert filled > 0
        # Background mode: no -d or -x; the launcher forks (python-daemon) and exits.
        argv = daemon_argv(tmp_path, *([] if background else [mode]), "--syslog-socket", path)
        with running(pair, tmp_path, argv, background=background,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as daemon:
            takes_over_and_answers_while_stalled(pair, tmp_path, daemon)

            # syslog reads again: what was lost is counted, and the stop is logged.
            syslog.settimeout(0.2)
            collector = Collector(lambda: syslog.recv(65536)).start()
            wait_until(lambda: len(collector.chunks) >= filled, ANSWER_BOUND, "the filled socket was read empty")
            daemon.terminate()
            if not background:
                assert daemon.launcher.wait(STOP_BOUND) == 0
            collector.stop()
    lines = [c.rstrip(b"\x00").decode() for c in collector.chunks if b"filler" not in c]
    ours = [line.split(": ", 1)[1] for line in lines if line.startswith("<") and f"failoverd[{daemon.pid}]" in line]
    lost = [line for line in ours if line.endswith(LOST)]
    assert lost and int(lost[0].split()[0]) > 0, lines
    assert ours.index(lost[0]) < ours.index("SIGTERM received: stopping"), ours
    assert ours[-1] == "failoverd stopped (status 0)", ours
    assert ADDRESS not in addresses_on(pair.a, "va"), "the stop did not release the address"


@requires_netns
@pytest.mark.slow
def test_stderr_pipe_nobody_reads_does_not_freeze_the_daemon(pair: Pair, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)
        filled = 0
        while True:
            try:
                filled += os.write(write_end, b"x" * 4096)
            except BlockingIOError:
                break
        assert filled > 0
        # The daemon gets the pipe as it would from a terminal multiplexer or a
        # supervisor that stopped reading: blocking.
        os.set_blocking(write_end, True)
        with running(pair, tmp_path, daemon_argv(tmp_path, "-d"), stdout=subprocess.DEVNULL, stderr=write_end) as daemon:
            os.close(write_end)
            write_end = -1
            takes_over_and_answers_while_stalled(pair, tmp_path, daemon)

            collector = Collector(lambda: os.read(read_end, 65536)).start()
            wait_until(lambda: sum(map(len, collector.chunks)) >= filled, ANSWER_BOUND, "the full pipe was read empty")
            daemon.terminate()
            assert daemon.launcher.wait(STOP_BOUND) == 0
            output = collector.stop()
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    text = output.replace(b"x" * 4096, b"").decode(errors="replace")
    lines = text.splitlines()
    lost = [line for line in lines if line.endswith(LOST)]
    assert lost, text[-2000:]
    assert lines.index(lost[0]) < next(i for i, line in enumerate(lines) if line.endswith("SIGTERM received: stopping"))
    assert lines[-1].endswith("failoverd stopped (status 0)"), lines[-5:]
    assert ADDRESS not in addresses_on(pair.a, "va"), "the stop did not release the address"


def test_a_terminal_stopped_with_ctrl_s_costs_counted_lines_not_a_blocked_writer(monkeypatch) -> None:
    # A stopped terminal takes no output until ^Q: a plain write to it waits that long.
    master, slave = os.openpty()
    stream = io.TextIOWrapper(io.FileIO(slave, "w", closefd=False), write_through=True)
    try:
        os.write(master, b"\x13")  # ^S
        monkeypatch.setattr("sys.stderr", stream)
        handler = logsetup.terminal_handler("failoverd")
        logger = logging.getLogger("failoverd.test.terminal")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            writer = threading.Thread(target=lambda: [logger.info("line %d", n) for n in range(5)], daemon=True)
            writer.start()
            writer.join(30)
            assert not writer.is_alive(), "a write to the stopped terminal blocked"
            os.write(master, b"\x11")  # ^Q: the terminal goes on
            logger.info("after ^Q")
        finally:
            logger.removeHandler(handler)
            handler.close()
        os.set_blocking(master, False)
        shown = b""
        deadline = time.monotonic() + 30
        while b"after ^Q" not in shown and time.monotonic() < deadline:
            try:
                shown += os.read(master, 4096)
            except BlockingIOError:
                time.sleep(0.05)
        lines = shown.decode().splitlines()
        assert [line.split(" ", 3)[3] for line in lines] == ["5 log messages lost (log target not accepting)", "after ^Q"]
    finally:
        stream.close()
        os.close(slave)
        os.close(master)

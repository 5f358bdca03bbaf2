"""Syslog on the wire: a real AF_UNIX datagram socket stands in for /dev/log.

Each datagram must start with <facility*8 + severity>, and a socket that
nobody reads (a stalled journald) must cost log lines, counted, never a
waiting log call. Lines reach the socket from the listener thread, so the
tests wait for it with ``logsetup.flush`` (bounded) before reading; a log
call that could block runs in a thread of its own, joined with a bound.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from pathlib import Path

import pytest

from failoverd.cli import logsetup
from failoverd.cli.exitcodes import EX_UNAVAILABLE, ProgramError

FACILITY = {"user": 1, "daemon": 3, "auth": 4, **{f"local{n}": 16 + n for n in range(8)}}
SEVERITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}


@pytest.fixture
def fake_dev_log(tmp_path: Path):
    path = tmp_path / "log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield sock, str(path)
    finally:
        # The socket first: a sender still blocked on it (a failed test) then wakes up.
        sock.close()
        logsetup.shutdown()


def received(sock: socket.socket) -> list[bytes]:
    assert logsetup.flush(30), "the log listener did not catch up"
    sock.settimeout(0.2)
    datagrams = []
    try:
        for _ in range(100):
            datagrams.append(sock.recv(4096))
    except TimeoutError:
        pass
    return datagrams


def decode(datagram: bytes) -> tuple[int, int, str]:
    match = re.fullmatch(rb"<(\d+)>(.*)\x00", datagram, re.S)
    assert match, datagram
    pri = int(match.group(1))
    return pri // 8, pri % 8, match.group(2).decode()


@pytest.mark.parametrize("facility", ["daemon", "auth", "user", "local0", "local5", "local7"])
def test_facility_and_severity_codes(fake_dev_log, facility: str) -> None:
    sock, path = fake_dev_log
    logger = logsetup.configure("failoverd", "no_fork", facility, syslog_address=path)
    child = logging.getLogger("failoverd.runtime.example")
    child.debug("not sent: -x logs INFO and above")
    child.info("master heard")
    child.warning("master suspect")
    child.error("acquire failed")
    logger.critical("split brain")
    got = [decode(d) for d in received(sock)]
    assert [(f, s) for f, s, _ in got] == [
        (FACILITY[facility], SEVERITY[level]) for level in ("info", "warning", "error", "critical")
    ]
    assert got[0][2] == f"failoverd[{os.getpid()}]: master heard"
    # The raw PRI value, spelled out once: local7.crit is 23*8+2.
    if facility == "local7":
        assert received(sock) == []
        logger.critical("x")
        assert logsetup.flush(30)
        assert sock.recv(4096).startswith(b"<186>")


def test_debug_mode_with_explicit_syslog_sends_debug_too(fake_dev_log, capsys) -> None:
    sock, path = fake_dev_log
    logger = logsetup.configure("heartbeatd", "debug", "local3", syslog_requested=True, syslog_address=path)
    logger.debug("tick")
    assert logsetup.flush(30)
    assert decode(sock.recv(4096)) == (19, 7, f"heartbeatd[{os.getpid()}]: tick")
    assert "heartbeatd DEBUG tick" in capsys.readouterr().err


def test_debug_mode_alone_stays_off_syslog(fake_dev_log, capsys) -> None:
    sock, path = fake_dev_log
    logger = logsetup.configure("failoverd", "debug", "daemon", syslog_address=path)
    logger.warning("only on the terminal")
    assert received(sock) == []
    assert "failoverd WARNING only on the terminal" in capsys.readouterr().err


def test_unreachable_syslog_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProgramError) as caught:
        logsetup.configure("failoverd", "daemon", "daemon", syslog_address=str(tmp_path / "nothing"))
    assert caught.value.status == EX_UNAVAILABLE
    assert "cannot reach syslog" in str(caught.value)


def fill(path: str) -> None:
    """Send to ``path`` without waiting until its queue takes no more (a syslog that stopped reading)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
        filler.connect(path)
        filler.setblocking(False)
        for _ in range(100_000):
            try:
                filler.send(b"<14>filler\x00")
            except BlockingIOError:
                return
    raise AssertionError("the socket never filled up")


def drain(sock: socket.socket) -> list[str]:
    """Everything queued on ``sock`` now, as text, fillers left out."""
    sock.setblocking(False)
    texts = []
    for _ in range(100_000):
        try:
            datagram = sock.recv(65536)
        except BlockingIOError:
            break
        if datagram != b"<14>filler\x00":
            texts.append(decode(datagram)[2].split(": ", 1)[1])
    return texts


def read_until(sock: socket.socket, last: str, bound: float = 30.0) -> list[str]:
    """Read ``sock`` as syslog would until the line ``last`` arrives (within ``bound``)."""
    sock.settimeout(bound)
    texts: list[str] = []
    while last not in texts:
        datagram = sock.recv(65536)
        if datagram != b"<14>filler\x00":
            texts.append(decode(datagram)[2].split(": ", 1)[1])
    return texts


def in_a_thread(function, bound: float = 30.0) -> None:
    """Run ``function`` in a thread; fail (instead of hanging) if it has not returned within ``bound``."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            function()
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"{function.__name__} still blocked after {bound:g} s"
    if errors:
        raise errors[0]


def test_a_syslog_nobody_reads_costs_counted_lines_not_a_waiting_caller(fake_dev_log) -> None:
    sock, path = fake_dev_log
    logger = logsetup.configure("failoverd", "no_fork", "daemon", syslog_address=path)
    fill(path)

    def log_a_burst() -> None:
        for n in range(3 * logsetup.QUEUE_SIZE):
            logger.info("line %d", n)

    in_a_thread(log_a_burst)
    # The listener works through the queue (offering each line to the stalled socket without waiting).
    assert logsetup.flush(30)
    assert drain(sock) == [], "a line got into the full socket"
    # syslog reads again (and keeps reading: the socket takes ten at a time).
    logger.info("after the stall")
    texts = read_until(sock, "after the stall")
    reports = [t for t in texts if t.endswith("log messages lost (log target not accepting)")]
    assert reports and texts[: len(reports)] == reports, texts
    delivered = [t for t in texts if t.startswith("line ")]
    # Every line of the burst either arrived or is counted, none twice.
    assert sum(int(t.split()[0]) for t in reports) + len(delivered) == 3 * logsetup.QUEUE_SIZE


def test_shutdown_with_a_stalled_syslog_returns_within_its_bound(fake_dev_log) -> None:
    _sock, path = fake_dev_log
    logger = logsetup.configure("failoverd", "no_fork", "daemon", syslog_address=path)
    fill(path)

    def log_and_shut_down() -> None:
        for n in range(50):
            logger.info("line %d", n)
        logsetup.shutdown()

    in_a_thread(log_and_shut_down)
    assert not [t for t in threading.enumerate() if t.name == "log-listener"]
    assert logging.getLogger(logsetup.PACKAGE_LOGGER).handlers == []


def test_configure_again_replaces_the_listener_and_the_socket(fake_dev_log, tmp_path: Path) -> None:
    first, first_path = fake_dev_log
    logsetup.configure("failoverd", "no_fork", "daemon", syslog_address=first_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as second:
        second.bind(str(tmp_path / "log2"))
        logger = logsetup.configure("failoverd", "no_fork", "daemon", syslog_address=str(tmp_path / "log2"))
        logger.info("to the second socket")
        assert logsetup.flush(30)
        second.settimeout(5)
        assert decode(second.recv(4096))[2].endswith(": to the second socket")
    assert drain(first) == []
    assert len([t for t in threading.enumerate() if t.name == "log-listener"]) == 1


def test_a_child_forked_after_configure_logs_through_its_own_listener(fake_dev_log) -> None:
    sock, path = fake_dev_log
    logsetup.configure("failoverd", "no_fork", "daemon", syslog_address=path)
    pid = os.fork()
    if pid == 0:  # the child: what the programs do after python-daemon's fork
        status = 1
        try:
            # Not into the parent's queue (its lock may have been copied taken), and never waiting.
            logging.getLogger("failoverd.runtime").warning("before configuring again")
            logger = logsetup.configure("failoverd", "no_fork", "daemon", syslog_address=path)
            logger.info("from the child")
            status = 0 if logsetup.flush(10) else 2
            logsetup.shutdown()
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sock.settimeout(5)
    assert decode(sock.recv(4096))[2] == f"failoverd[{pid}]: from the child"

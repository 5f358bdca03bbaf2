"""Syslog encoding on the wire: a real AF_UNIX datagram socket stands in for
/dev/log, and each datagram must start with <facility*8 + severity>."""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path

import pytest

from failoverd import logsetup
from failoverd.exitcodes import EX_UNAVAILABLE, ProgramError

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
        logsetup.shutdown()
        sock.close()


def received(sock: socket.socket) -> list[bytes]:
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
        assert sock.recv(4096).startswith(b"<186>")


def test_debug_mode_with_explicit_syslog_sends_debug_too(fake_dev_log, capsys) -> None:
    sock, path = fake_dev_log
    logger = logsetup.configure("heartbeatd", "debug", "local3", syslog_requested=True, syslog_address=path)
    logger.debug("tick")
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

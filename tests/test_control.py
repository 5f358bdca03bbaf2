"""The control socket and failoverctl, over real Unix sockets.

Testing charter: every server listens on a socket in a directory this test
created and removes; every test is bounded by ``fail_after``; processes run
as another user (uid 65534, through setpriv) are started and awaited here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import shutil
import socket
import stat
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from failoverd.cli.exitcodes import EX_CONFIG, EX_UNAVAILABLE, EX_USAGE
from failoverd.core.actions import Counters
from failoverd.core.timing import Timing
from failoverd.programs import failoverctl
from failoverd.runtime.control import (
    MAX_CLIENTS,
    MAX_REQUEST_BYTES,
    ControlError,
    ControlSocketError,
    ControlSocketInUse,
    Status,
    command_handler,
    parse_request,
    request,
    serve_control,
    timing_dict,
)

FAILOVERCTL = [sys.executable, "-m", "failoverd.programs.failoverctl"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
NOW = time.time()


def _status() -> Status:
    counters = Counters(accepted=1234, failovers=1)
    counters.reject("bad-mac")
    return {
        "role": "backup",
        "state": "failed_over",
        "since": NOW - 7200.0,
        "master": "10.0.0.1",
        "paths": [
            {"name": "eth1 10.0.0.1:1694", "last_heard_age": 0.42, "healthy": True},
            {"name": "eth0 192.0.2.1:1694", "last_heard_age": None, "healthy": False},
        ],
        "held": ["eth0:192.0.2.10/24", "eth0:192.0.2.11"],
        "counters": counters.as_status(),
        "timing": timing_dict(Timing()),
        "version": "0.1.0",
    }


@dataclass
class Daemon:
    """A control server and what its handler saw."""

    path: Path
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Not tmp_path: pytest's base directory is 0700, and the unprivileged
    # client must be able to reach the socket to be refused by it.
    directory = Path(tempfile.mkdtemp(prefix="foctl", dir="/tmp"))
    try:
        directory.chmod(0o755)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def daemon(socket_dir: Path, nursery: trio.Nursery) -> AsyncIterator[Daemon]:
    served = Daemon(socket_dir / "failoverd.sock")
    standard = command_handler(status=_status, dump=lambda: {"core": {"state": "failed_over"}, "queue": []})

    def handler(req: dict[str, Any]) -> Any:
        served.requests.append(req)
        if req["command"] == "explode":
            raise RuntimeError("the handler has a bug")
        if req["command"] == "unserialisable":
            return {"when": object()}
        return standard(req)

    await nursery.start(serve_control, served.path, handler)
    yield served


async def _raw(path: Path, data: bytes) -> dict[str, Any]:
    """Send ``data`` as it is and read the one-line reply."""
    with trio.fail_after(10):
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sock:
            await sock.connect(str(path))
            await sock.send(data)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = await sock.recv(65536)
                assert chunk, f"connection closed after {reply!r}"
                reply += chunk
    return json.loads(reply)


async def _request(path: Path, command: str, **fields: Any) -> dict[str, Any]:
    with trio.fail_after(10):
        return await trio.to_thread.run_sync(lambda: request(path, command, **fields))


async def _run(argv: list[str]) -> tuple[int, str, str]:
    with trio.fail_after(30):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


# --- the socket file ----------------------------------------------------------


@pytest.mark.trio
async def test_socket_is_private_to_root_and_removed_at_exit(socket_dir):
    path = socket_dir / "sub" / "ctl.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, command_handler(status=_status, dump=dict))
        st = path.lstat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
        nursery.cancel_scope.cancel()
    assert not path.exists()


@pytest.mark.trio
async def test_stale_socket_is_replaced(socket_dir):
    path = socket_dir / "ctl.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays; nobody listens: what a crashed daemon leaves
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, command_handler(status=_status, dump=dict))
        assert (await _request(path, "ping"))["pong"] is True
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_live_server_is_not_displaced(daemon):
    with pytest.raises(ControlSocketInUse, match="another process is serving it") as raised:
        await serve_control(daemon.path, command_handler(status=_status, dump=dict))
    assert raised.value.status == EX_UNAVAILABLE
    assert (await _request(daemon.path, "ping"))["pong"] is True


@pytest.mark.trio
async def test_a_file_that_is_not_a_socket_is_left_alone(socket_dir):
    path = socket_dir / "ctl.sock"
    path.write_text("not a socket")
    with pytest.raises(ControlSocketError, match="not a socket") as raised:
        await serve_control(path, command_handler(status=_status, dump=dict))
    assert raised.value.status == EX_CONFIG
    assert path.read_text() == "not a socket"


@pytest.mark.trio
async def test_a_directory_that_cannot_be_made_is_a_configuration_error(socket_dir):
    (socket_dir / "file").write_text("")
    with pytest.raises(ControlSocketError, match="cannot create it: Not a directory") as raised:
        await serve_control(socket_dir / "file" / "sub" / "ctl.sock", command_handler(status=_status, dump=dict))
    assert raised.value.status == EX_CONFIG


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _not_a_socket(directory: Path) -> Path:
    (directory / "ctl.sock").write_text("not a socket")
    return directory / "ctl.sock"


def _under_a_file(directory: Path) -> Path:
    (directory / "file").write_text("")
    return directory / "file" / "run" / "ctl.sock"


def _too_long(directory: Path) -> Path:
    return directory / ("x" * 120)


@pytest.mark.skipif(os.geteuid() != 0, reason="the daemons need root")
@pytest.mark.trio
@pytest.mark.parametrize(
    ("where", "status", "message"),
    [
        (_not_a_socket, EX_CONFIG, "exists and is not a socket"),
        (_under_a_file, EX_CONFIG, "cannot create it: Not a directory"),
        (_too_long, EX_USAGE, "longer than 107 bytes"),
    ],
)
async def test_a_daemon_whose_control_socket_cannot_be_served_exits_with_its_status(socket_dir, where, status, message):
    # heartbeatd on loopback, in the foreground: what the units run, minus syslog.
    path = where(socket_dir)
    code, _out, err = await _run([
        sys.executable, "-m", "failoverd.programs.heartbeatd", "-d", "-p", str(_free_udp_port()),
        "--pid-file", str(socket_dir / "hb.pid"), "--control-socket", str(path),
        "--state-dir", str(socket_dir / "state"), "--hook-dir", str(socket_dir / "hooks"), "127.0.0.1",
    ])
    # Not 70 (which the units restart on, forever) and no traceback: one line that says why.
    assert code == status, err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "ERROR" in line]
    assert f"control socket {path}: " in line and message in line


@pytest.mark.trio
async def test_a_socket_path_too_long_is_refused(socket_dir):
    with pytest.raises(ControlSocketError, match="longer than 107 bytes") as raised:
        await serve_control(socket_dir / ("x" * 120), command_handler(status=_status, dump=dict))
    assert raised.value.status == EX_USAGE


@pytest.mark.trio
async def test_our_socket_replaced_by_another_is_not_removed(socket_dir):
    path = socket_dir / "ctl.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, command_handler(status=_status, dump=dict))
        path.unlink()
        path.write_text("someone else's")
        nursery.cancel_scope.cancel()
    assert path.read_text() == "someone else's"


# --- requests ------------------------------------------------------------------


@pytest.mark.trio
async def test_standard_commands(daemon):
    assert await _request(daemon.path, "status") == json.loads(json.dumps(_status()))
    assert await _request(daemon.path, "dump") == {"core": {"state": "failed_over"}, "queue": []}
    pong = await _request(daemon.path, "ping")
    assert pong["pong"] is True and pong["pid"] == os.getpid()


@pytest.mark.trio
@pytest.mark.parametrize(
    ("data", "reason", "fragment"),
    [
        (b"status\n", "malformed", "not valid JSON"),
        (b"[\"status\"]\n", "malformed", "must be a JSON object, not list"),
        (b"{\"cmd\": \"status\"}\n", "malformed", 'no "command" string'),
        (b"{\"command\": 7}\n", "malformed", 'no "command" string'),
        (b"\xff\xfe{}\n", "malformed", "not UTF-8"),
        (b"\n", "malformed", "empty request"),
        (b"", "malformed", "empty request"),
        (b"{\"command\": \"reboot\"}\n", "unknown-command", "unknown command 'reboot' (known: dump, ping, status)"),
        (b"{\"command\": \"explode\"}\n", "internal", "RuntimeError: the handler has a bug"),
        (b"{\"command\": \"unserialisable\"}\n", "internal", "not JSON serializable"),
    ],
)
async def test_bad_requests_get_an_error_and_the_server_goes_on(daemon, data, reason, fragment):
    reply = await _raw(daemon.path, data)
    assert reply["ok"] is False and reply["reason"] == reason
    assert fragment in reply["error"]
    assert (await _request(daemon.path, "ping"))["pong"] is True


@pytest.mark.trio
async def test_request_size_is_bounded(daemon):
    def padded(total: int) -> bytes:
        head = b'{"command": "ping", "pad": "'
        tail = b'"}\n'
        return head + b"x" * (total - len(head) - len(tail)) + tail

    assert (await _raw(daemon.path, padded(MAX_REQUEST_BYTES)))["ok"] is True
    reply = await _raw(daemon.path, padded(MAX_REQUEST_BYTES + 1))
    assert reply == {"ok": False, "reason": "too-large", "error": f"request is larger than {MAX_REQUEST_BYTES} bytes"}
    # A client that never sends a newline is cut off at the limit too.
    reply = await _raw(daemon.path, b"x" * (MAX_REQUEST_BYTES * 3))
    assert reply["reason"] == "too-large"
    assert (await _request(daemon.path, "ping"))["pong"] is True


@pytest.mark.trio
async def test_client_reports_error_replies_with_their_reason(daemon):
    with pytest.raises(ControlError, match="unknown command 'reboot'") as raised:
        await _request(daemon.path, "reboot")
    assert raised.value.reason == "unknown-command"


def test_client_without_a_daemon(socket_dir):
    with pytest.raises(ControlError, match="is the daemon running") as raised:
        request(socket_dir / "none.sock", "status")
    assert raised.value.reason == "unavailable"


def test_client_waits_while_the_backlog_is_full_and_then_says_so(socket_dir):
    path = socket_dir / "busy.sock"
    queued: list[socket.socket] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(0)  # and never accepts
        try:
            for _ in range(16):  # fill the backlog
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    sock.connect(str(path))
                except BlockingIOError:
                    sock.close()
                    break
                queued.append(sock)
            assert queued
            with pytest.raises(ControlError, match=r"did not accept within 0\.3 s") as raised:
                request(path, "ping", timeout=0.3)
            assert raised.value.reason == "unavailable"
        finally:
            for sock in queued:
                sock.close()


# --- root only ---------------------------------------------------------------------


@pytest.mark.trio
async def test_non_root_cannot_open_the_socket(daemon):
    status, out, err = await _run([*NOBODY, *FAILOVERCTL, "status", "--socket", str(daemon.path)])
    assert status == os.EX_NOPERM
    assert f"permission denied on {daemon.path}: run as root" in err
    assert out == ""
    assert daemon.requests == []


@pytest.mark.trio
async def test_non_root_is_refused_by_peer_credentials_even_if_the_mode_is_loosened(daemon):
    daemon.path.chmod(0o666)
    status, out, err = await _run([*NOBODY, *FAILOVERCTL, "status", "--socket", str(daemon.path)])
    assert status == os.EX_NOPERM
    assert "the control socket answers only root (you are uid 65534)" in err
    assert out == ""
    assert daemon.requests == []
    # Root still gets its answer.
    assert (await _request(daemon.path, "ping"))["pong"] is True


# --- failoverctl ---------------------------------------------------------------------


@pytest.mark.trio
async def test_failoverctl_status_text(daemon):
    status, out, err = await _run([*FAILOVERCTL, "status", "--socket", str(daemon.path)])
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "role      backup"
    assert re.fullmatch(r"state     failed_over for 2h\d\dm\d\ds \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+\)", lines[1])
    assert lines[2] == "master    10.0.0.1"
    header, first, second = lines[3:6]
    assert header.split() == ["paths", "NAME", "LAST", "HEARD", "HEALTH"]
    # Columns line up: each value starts where its heading does.
    for heading in ("LAST HEARD", "HEALTH"):
        column = header.index(heading)
        assert first[column - 1] == " " and first[column] != " "
        assert second[column - 1] == " " and second[column] != " "
    assert "0.4 s ago" in first and first.endswith("ok")
    assert "never" in second and second.endswith("QUIET")
    assert lines[6] == "held      eth0:192.0.2.10/24"
    assert lines[7] == "          eth0:192.0.2.11"
    assert "          rejected.bad-mac  1" in lines
    assert any(line.startswith("counters  accepted          1234") for line in lines)
    assert "          fail_after      3 s" in lines
    assert "          probe_count     3" in lines
    assert lines[-1] == "version   0.1.0"


@pytest.mark.trio
async def test_failoverctl_status_json(daemon):
    status, out, err = await _run([*FAILOVERCTL, "status", "--json", "--socket", str(daemon.path)])
    assert status == 0, err
    assert json.loads(out) == json.loads(json.dumps(_status()))


@pytest.mark.trio
async def test_failoverctl_dump_and_ping(daemon):
    status, out, _ = await _run([*FAILOVERCTL, "dump", "--socket", str(daemon.path)])
    assert status == 0 and json.loads(out) == {"core": {"state": "failed_over"}, "queue": []}
    status, out, _ = await _run([*FAILOVERCTL, "ping", "--socket", str(daemon.path)])
    assert status == 0 and out.startswith(f"pong from pid {os.getpid()} (version ")


@pytest.mark.trio
async def test_failoverctl_without_a_daemon(socket_dir):
    status, out, err = await _run([*FAILOVERCTL, "status", "--socket", str(socket_dir / "none.sock")])
    assert status == os.EX_UNAVAILABLE
    assert "is the daemon running?" in err and out == ""


@pytest.mark.trio
async def test_failoverctl_usage():
    status, _, err = await _run([*FAILOVERCTL])
    assert status == os.EX_USAGE and "COMMAND" in err
    status, _, err = await _run([*FAILOVERCTL, "status", "--timeout", "0"])
    assert status == os.EX_USAGE and "outside 0..3600 s" in err


# --- failoverctl without --socket -----------------------------------------------------


def _with_run(run_dir: Path, argv: list[str]) -> list[str]:
    """``argv`` run with ``run_dir`` in place of /run, in a mount namespace of its
    own: failoverctl looks in the real paths, the host's /run is not touched."""
    return ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /run && exec "$@"', str(run_dir), *argv]


async def _serve_role(nursery: trio.Nursery, path: Path, role: str) -> None:
    await nursery.start(serve_control, path, command_handler(status=lambda: {**_status(), "role": role}, dump=dict))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a mount namespace")


@needs_root
@pytest.mark.trio
@pytest.mark.parametrize(
    ("where", "role"),
    [
        ("failoverd/failoverd.sock", "backup"),  # where the units and the daemons' defaults put them
        ("heartbeatd/heartbeatd.sock", "master"),
        ("failoverd.sock", "backup"),  # the defaults of earlier versions
        ("heartbeatd.sock", "master"),
    ],
)
async def test_failoverctl_finds_the_one_daemon_there_is(socket_dir, nursery, where, role):
    await _serve_role(nursery, socket_dir / where, role)
    status, out, err = await _run(_with_run(socket_dir, [*FAILOVERCTL, "status", "--json"]))
    assert status == 0, err
    assert json.loads(out)["role"] == role


@needs_root
@pytest.mark.trio
async def test_failoverctl_asks_which_when_both_daemons_run(socket_dir, nursery):
    await _serve_role(nursery, socket_dir / "failoverd" / "failoverd.sock", "backup")
    await _serve_role(nursery, socket_dir / "heartbeatd" / "heartbeatd.sock", "master")
    status, out, err = await _run(_with_run(socket_dir, [*FAILOVERCTL, "status"]))
    assert status == os.EX_USAGE and out == ""
    assert "/run/failoverd/failoverd.sock and /run/heartbeatd/heartbeatd.sock" in err
    assert "--role backup (failoverd) or --role master (heartbeatd)" in err
    for choice, role in [("master", "master"), ("heartbeatd", "master"), ("backup", "backup"), ("failoverd", "backup")]:
        status, out, err = await _run(_with_run(socket_dir, [*FAILOVERCTL, "status", "--json", "--role", choice]))
        assert status == 0, err
        assert json.loads(out)["role"] == role


@needs_root
@pytest.mark.trio
async def test_failoverctl_will_not_guess_between_two_sockets_of_one_daemon(socket_dir, nursery):
    await _serve_role(nursery, socket_dir / "failoverd" / "failoverd.sock", "backup")
    await _serve_role(nursery, socket_dir / "failoverd.sock", "backup")
    status, _, err = await _run(_with_run(socket_dir, [*FAILOVERCTL, "ping", "--role", "backup"]))
    assert status == os.EX_USAGE
    assert "more than one failoverd control socket: /run/failoverd/failoverd.sock and /run/failoverd.sock" in err
    assert "--socket PATH" in err


@needs_root
@pytest.mark.trio
async def test_failoverctl_names_every_path_it_tried(socket_dir):
    status, out, err = await _run(_with_run(socket_dir, [*FAILOVERCTL, "status"]))
    assert status == os.EX_UNAVAILABLE and out == ""
    assert err == (
        "failoverctl: no control socket at /run/failoverd/failoverd.sock, /run/failoverd.sock, "
        "/run/heartbeatd/heartbeatd.sock, /run/heartbeatd.sock: is failoverd or heartbeatd running? "
        "(or give --socket PATH)\n"
    )
    status, _, err = await _run(_with_run(socket_dir, [*FAILOVERCTL, "status", "--role", "master"]))
    assert status == os.EX_UNAVAILABLE
    assert "no control socket at /run/heartbeatd/heartbeatd.sock, /run/heartbeatd.sock: is heartbeatd running?" in err


@pytest.mark.trio
async def test_failoverctl_socket_and_role_exclude_each_other():
    status, _, err = await _run([*FAILOVERCTL, "status", "--socket", "/run/x.sock", "--role", "master"])
    assert status == os.EX_USAGE and "not allowed with argument" in err
    status, _, err = await _run([*FAILOVERCTL, "status", "--role", "primary"])
    assert status == os.EX_USAGE and "'primary' is not backup, master, failoverd or heartbeatd" in err


def test_format_status_with_missing_fields():
    text = failoverctl.format_status({"state": "monitoring"}, NOW)
    assert text.splitlines() == [
        "role      ?",
        "state     monitoring",
        "master    unknown",
        "paths     none",
        "held      none",
        "counters  none",
        "timing    none",
        "version   ?",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0.0 s"), (-1.0, "0.0 s"), (12.34, "12.3 s"), (187, "3m07s"), (7510, "2h05m10s"), (3 * 86400 + 4 * 3600 + 720, "3d 04h12m")],
)
def test_format_age(seconds, text):
    assert failoverctl.format_age(seconds) == text


@pytest.mark.trio
async def test_clients_that_vanish_do_not_stop_the_server(daemon):
    with trio.fail_after(10):
        for i in range(20):
            sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with sock:
                await sock.connect(str(daemon.path))
                if i % 2:
                    await sock.send(b'{"command": "sta')
    assert (await _request(daemon.path, "ping"))["pong"] is True


# --- no client locks the others out ------------------------------------------------


def _connect_all(path: Path, count: int, request_line: bytes = b"") -> list[socket.socket]:
    """``count`` connections (sending ``request_line`` on each), made in a thread:
    the server runs on the test's own event loop. Each connect waits (at most
    10 s) while the listen backlog is full, as a blocking client's does."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            opened.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 10, 0))
            sock.connect(str(path))
            if request_line:
                sock.sendall(request_line)
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    return opened


def _wait_closed_by_peer(sock: socket.socket, bound: float) -> bool:
    """Whether the other end closed ``sock`` within ``bound`` seconds, without reading from it."""
    poller = select.poll()
    poller.register(sock, select.POLLHUP)
    return any(event & select.POLLHUP for _, event in poller.poll(bound * 1000))


def _drain(sock: socket.socket) -> bytes:
    """What ``sock`` still receives, up to the end (or a reset: closed before reading all we sent)."""
    data = bytearray()
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except ConnectionResetError:
        pass
    return bytes(data)


@pytest.mark.trio
async def test_idle_connections_do_not_lock_failoverctl_out(daemon):
    # Twice the limit: with a fixed number of slots, half would sit in the listen
    # backlog behind the other half, and failoverctl behind them all.
    idle = await trio.to_thread.run_sync(_connect_all, daemon.path, 2 * MAX_CLIENTS)
    try:
        status, out, err = await _run([*FAILOVERCTL, "status", "--json", "--socket", str(daemon.path)])
        assert status == 0, err
        assert json.loads(out)["state"] == "failed_over"
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.trio
async def test_clients_that_do_not_read_their_answer_are_dropped(socket_dir, nursery):
    path = socket_dir / "ctl.sock"
    big = {"blob": "x" * (1 << 20)}  # far more than a Unix socket buffers
    standard = command_handler(status=_status, dump=lambda: big)
    await nursery.start(serve_control, path, standard)
    full_reply = len(json.dumps({"ok": True, "result": big})) + 1
    stalled = await trio.to_thread.run_sync(_connect_all, path, 2 * MAX_CLIENTS, b'{"command": "dump"}\n')
    try:
        status, out, err = await _run([*FAILOVERCTL, "ping", "--socket", str(path)])
        assert status == 0, err
        assert out.startswith("pong from pid")
        for sock in stalled:
            # The daemon gave up on each (by its deadline, or to make room): the
            # connection is closed although the answer was never read whole.
            assert await trio.to_thread.run_sync(_wait_closed_by_peer, sock, 20.0)
            received = await trio.to_thread.run_sync(_drain, sock)
            assert len(received) < full_reply
    finally:
        for sock in stalled:
            sock.close()


# --- malformed requests -------------------------------------------------------------


def _control_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "failoverd.runtime.control"]


@pytest.mark.trio
@pytest.mark.parametrize(
    ("data", "reason", "fragment"),
    [
        (b"[" * 4000 + b"\n", "malformed", "nested too deeply"),
        (b"[" * 2000 + b"]" * 2000 + b"\n", "malformed", "nested too deeply"),
        (b'{"command": "status", "x": ' + b'{"a": ' * 500 + b"1" + b"}" * 500 + b"}\n", "malformed", "nested too deeply"),
        (b'{"command": "ping", "x": "' + b"[" * 3000 + b'"}\n', None, None),  # brackets in a string are text
        (b"[" * 100_000 + b"\n", "too-large", "larger than 4096 bytes"),
        (b"{\"command\": \"status\"", "malformed", "not valid JSON"),
        (b"\x00\n", "malformed", "not valid JSON"),
    ],
)
async def test_malformed_requests_get_one_log_line_and_no_traceback(daemon, caplog, data, reason, fragment):
    caplog.set_level(logging.DEBUG, logger="failoverd.runtime.control")
    with trio.fail_after(10):
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sock:
            await sock.connect(str(daemon.path))
            try:
                await sock.send(data)
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused at the limit, before all of it was read
            received = b""
            try:
                while chunk := await sock.recv(65536):  # until the daemon closes
                    received += chunk
            except ConnectionResetError:
                pass  # closed with the rest of the request unread: the answer came first
    line, newline, rest = received.partition(b"\n")
    assert newline and rest == b""
    reply = json.loads(line)
    records = [r for r in _control_records(caplog) if r.levelno >= logging.INFO]
    if reason is None:
        assert reply["ok"] is True and records == []
        return
    assert reply["ok"] is False and reply["reason"] == reason
    assert fragment in reply["error"]
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.exc_info is None
    assert "\n" not in record.getMessage() and reason in record.getMessage()
    assert daemon.requests == []
    assert (await _request(daemon.path, "ping"))["pong"] is True


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


def _nested(depth: int, inner: str) -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


@settings(max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=MAX_REQUEST_BYTES - 1),
        _json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.sampled_from(["command", "x", ""]), _json_values).map(lambda v: json.dumps(v).encode()),
        st.builds(_nested, st.integers(0, 2000), st.sampled_from(["", "1", '{"command": "status"}', "[", '"'])),
        st.builds(lambda d: b'{"command": "ping", "x": ' + _nested(d, "") + b"}", st.integers(0, 2000)),
    )
)
def test_the_request_parser_answers_any_line_with_a_request_or_its_own_error(line):
    try:
        parsed = parse_request(line)
    except ControlError as error:
        assert error.reason == "malformed"
        assert "\n" not in str(error)
    else:
        assert isinstance(parsed, dict)
        assert isinstance(parsed["command"], str) and parsed["command"]

"""The control socket: how ``failoverctl`` asks a running daemon about itself.

Protocol (one exchange per connection): the client sends one JSON object on
one line, ``{"command": "status"}``, at most :data:`MAX_REQUEST_BYTES` bytes
with its newline; the daemon answers one JSON line and closes:

    {"ok": true, "result": {...}}
    {"ok": false, "reason": "malformed", "error": "request is not valid JSON: ..."}

``reason`` is one of :data:`ERROR_REASONS`. Commands: ``status`` (a
:class:`Status`), ``dump`` (the daemon's full state, free-form) and ``ping``.

Access: the socket is created mode 0600 and owned by root, and every
connection's peer credentials (SO_PEERCRED) are checked as well, so a
non-root process is refused even if the file's mode is later loosened.

No client can lock the others out, nor hold up the daemon (the server runs
on the daemon's own event loop, beside the core): a client has
:data:`REQUEST_TIMEOUT` seconds to send its request line and the daemon
spends at most :data:`REPLY_TIMEOUT` seconds on the answer, so one that does
not read it is dropped. Connections are always accepted; beyond
:data:`MAX_CLIENTS` the oldest one is dropped to make room, preferring one
that has not sent its request yet. A refused request is logged in one line.
"""

from __future__ import annotations

import errno
import inspect
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import trio

from failoverd import __version__
from failoverd.cli.exitcodes import EX_CONFIG, EX_UNAVAILABLE, EX_USAGE, ProgramError
from failoverd.core.timing import Timing

log = logging.getLogger("failoverd.runtime.control")

MAX_REQUEST_BYTES = 4096
MAX_REQUEST_DEPTH = 32
"""Nesting of ``[`` and ``{`` a request may have; a request is one flat object."""
REQUEST_TIMEOUT = 2.0
"""Seconds a client has, from being accepted, to send its request line."""
REPLY_TIMEOUT = 2.0
"""Seconds the daemon spends on one answer: the handler, then sending it."""
MAX_CLIENTS = 8
"""Connections kept at once; one more drops the oldest (see the module's docstring)."""
CLIENT_TIMEOUT = 5.0
"""Seconds :func:`request` waits for the daemon by default (each of connect, send, answer)."""
# Connections are accepted at once whatever their number, so the backlog only
# has to absorb a burst between two turns of the accept loop.
_LISTEN_BACKLOG = 64
_PROBE_TIMEOUT = 5.0
"""Seconds to wait, at start, for a server already at the socket's path to accept."""
ERROR_REASONS = ("forbidden", "malformed", "too-large", "unknown-command", "internal")

ErrorReason = Literal["forbidden", "malformed", "too-large", "unknown-command", "internal"]

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
# sun_path is 108 bytes including the terminating NUL.
_SUN_PATH_MAX = 107


# --- the status shape ---------------------------------------------------------


class PathStatus(TypedDict):
    """One heartbeat path as the daemon sees it."""

    name: str
    """What the path is, e.g. ``"eth1 10.0.0.1:1694"``."""
    last_heard_age: float | None
    """Seconds since the last valid heartbeat on this path; ``None``: never heard."""
    healthy: bool
    """Heard within the failure timeout."""


class TransitionStatus(TypedDict):
    """One recent state change (the daemon keeps the last few: see ``lifecycle.RecentTransitions``)."""

    at: float
    """When it happened, Unix time in seconds."""
    source: str
    dest: str
    trigger: str
    """What the core reacted to (``silence``, ``heartbeat``, ``acquired`` ...)."""


class WitnessStatus(TypedDict):
    """The etcd witness as the core sees it."""

    reachable: bool
    """The last claim or renewal was answered."""
    claim: bool
    """This host holds the address set's claim (granted, not given back or lost)."""
    proof_left: float | None
    """Seconds the newest proof still lets this host hold the addresses; ``None``: no claim."""
    confirmation_left: float | None
    """``--etcd-unreachable keep``: seconds the peer's newest confirmation that it cannot reach etcd
    either still keeps the addresses held; ``None``: none that runs."""


class Status(TypedDict):
    """What ``status`` answers: the daemon's state at the moment of the request."""

    role: Literal["backup", "master"]
    state: str
    """The core's state name (``monitoring``, ``failed_over``, ``holding`` ...)."""
    since: float
    """When ``state`` was entered, Unix time in seconds."""
    master: str | None
    """The master's private address (backup), or this master's own; ``None`` if unknown."""
    paths: list[PathStatus]
    held: list[str]
    """The addresses this host holds, as ``interface:address[/mask]`` triplets."""
    counters: dict[str, Any]
    """:class:`~failoverd.core.actions.Counters` as a dict (see :meth:`~failoverd.core.actions.Counters.as_status`)."""
    timing: dict[str, float | int]
    """Effective timing in seconds and counts (see :func:`timing_dict`)."""
    transitions: list[TransitionStatus]
    """The last few state changes, oldest first; empty until the first one."""
    version: str
    witness: NotRequired[WitnessStatus]
    """Only with ``--etcd-endpoints`` (spec/witness.md)."""


def timing_dict(timing: Timing) -> dict[str, float | int | None]:
    """The effective (defaults resolved) timing in the form ``Status.timing`` uses."""
    return {
        "interval": timing.interval,
        "suspect_after": timing.suspect_after,
        "fail_after": timing.fail_after,
        "probe_count": timing.probe_count,
        "probe_spacing": timing.effective_probe_spacing,
        "garp_count": timing.garp_count,
        "garp_spacing": timing.garp_spacing,
        "garp_refresh": timing.garp_refresh,
        "retry_interval": timing.effective_retry_interval,
        "max_delay": timing.effective_max_delay,
    }


# --- errors and handlers ------------------------------------------------------


class ControlError(Exception):
    """A request that cannot be answered; ``reason`` is one of :data:`ERROR_REASONS`.

    Raised by handlers (the server turns it into an error reply) and by the
    client (for error replies and for sockets it cannot use; then ``reason``
    is ``"unavailable"``, ``"forbidden"`` or ``"protocol"``).
    """

    def __init__(self, message: str, reason: str = "internal") -> None:
        super().__init__(message)
        self.reason = reason


class ControlSocketError(ProgramError):
    """The control socket cannot be served at its path; ``status`` is the exit code.

    78 (EX_CONFIG): the path cannot work (not a socket there, a directory that
    cannot be created or written); 64 (EX_USAGE): the path is too long. Either
    way a restart would not help, and the systemd units do not restart on them.
    """

    def __init__(self, status: int, path: Path, problem: str) -> None:
        super().__init__(status, f"control socket {path}: {problem}")
        self.path = path


class ControlSocketInUse(ControlSocketError):
    """Another live process is serving the control socket's path (69, EX_UNAVAILABLE)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            EX_UNAVAILABLE, path,
            "another process is serving it (another instance, started with a different --pid-file?)",
        )


Request = dict[str, Any]
Reply = Mapping[str, Any]
Handler = Callable[[Request], Reply | Awaitable[Reply]]


def command_handler(
    *,
    status: Callable[[], Status | Reply],
    dump: Callable[[], Reply],
) -> Callable[[Request], Reply]:
    """A handler for the standard commands, built from the daemon's two views.

    ``ping`` is answered here; an unknown command is refused with the list of
    known ones.
    """
    commands: dict[str, Callable[[], Reply]] = {
        "status": status,
        "dump": dump,
        "ping": lambda: {"pong": True, "version": __version__, "pid": os.getpid()},
    }

    def handle(request: Request) -> Reply:
        command = request["command"]
        try:
            produce = commands[command]
        except KeyError:
            known = ", ".join(sorted(commands))
            raise ControlError(f"unknown command {command!r} (known: {known})", "unknown-command") from None
        return produce()

    return handle


# --- the server ----------------------------------------------------------------


def _check_path(path: Path) -> None:
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise ControlSocketError(EX_USAGE, path, f"the path is longer than {_SUN_PATH_MAX} bytes")


async def _clear_stale_socket(path: Path) -> None:
    """Remove a socket left by a daemon that died; refuse to touch anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlSocketError(EX_CONFIG, path, "exists and is not a socket; not replacing it")
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        try:
            with trio.fail_after(_PROBE_TIMEOUT):
                await probe.connect(str(path))
        except ConnectionRefusedError:
            log.info("removing stale control socket %s", path)
            os.unlink(path)
            return
        except (trio.TooSlowError, BlockingIOError):
            pass  # a live server with a full backlog: in use all the same
    raise ControlSocketInUse(path)


async def _open_listener(path: Path) -> tuple[trio.socket.SocketType, os.stat_result]:
    """The listening socket, bound at ``path``, and the file it made.

    Error handling: every reason not to serve becomes a :class:`ControlSocketError`.
    """
    _check_path(path)
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ours: os.stat_result | None = None
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        await _clear_stale_socket(path)
        ours = await _bind_private(listener, path)
        listener.listen(_LISTEN_BACKLOG)
    except BaseException as exc:
        listener.close()
        if ours is not None:
            _unlink_if_ours(path, ours)
        if isinstance(exc, OSError):
            if exc.errno == errno.EADDRINUSE:
                raise ControlSocketInUse(path) from None  # bound by someone else since the probe
            raise ControlSocketError(EX_CONFIG, path, f"cannot create it: {exc.strerror or exc}") from None
        raise
    return listener, ours


async def _bind_private(sock: trio.socket.SocketType, path: Path) -> os.stat_result:
    # Linux gives the bound file the socket inode's mode (minus umask), so
    # setting it first leaves no moment in which the file is open to others.
    os.fchmod(sock.fileno(), 0o600)
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    if os.geteuid() == 0:
        os.chown(path, 0, 0)
    return os.stat(path)


def _peer_uid(sock: trio.socket.SocketType) -> tuple[int, int]:
    pid, uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return pid, uid


def _error(reason: ErrorReason, message: str) -> dict[str, Any]:
    return {"ok": False, "reason": reason, "error": message}


async def _read_request(stream: trio.SocketStream, limit: int) -> bytes | None:
    """The request line without its newline, or ``None`` if it (newline included) exceeds ``limit``."""
    buffer = bytearray()
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            return bytes(buffer[:end]) if end < limit else None
        if len(buffer) >= limit:
            return None
        chunk = await stream.receive_some(limit - len(buffer))
        if not chunk:
            # A client that half-closes instead of sending a newline is fine.
            return bytes(buffer)
        buffer += chunk


def _nesting_exceeds(text: str, limit: int) -> bool:
    """Whether JSON ``text`` opens more than ``limit`` arrays or objects inside one another."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def parse_request(line: bytes) -> Request:
    """The request in one line (without its newline).

    Error handling: anything but a JSON object with a non-empty ``command``
    string raises :class:`ControlError` with reason ``"malformed"`` and a
    one-line message; nothing else is raised, whatever the bytes.
    """
    if not line.strip():
        raise ControlError("empty request; send one JSON object such as {\"command\": \"status\"}", "malformed")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ControlError("request is not UTF-8", "malformed") from None
    # The decoder recurses once per level (a RecursionError, deep enough):
    # measured first, so the limit is ours and the same on every Python.
    if _nesting_exceeds(text, MAX_REQUEST_DEPTH):
        raise ControlError(f"request is nested too deeply (more than {MAX_REQUEST_DEPTH} levels)", "malformed")
    try:
        request = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ControlError(f"request is not valid JSON: {exc.msg} at column {exc.colno}", "malformed") from None
    if not isinstance(request, dict):
        raise ControlError(f"request must be a JSON object, not {type(request).__name__}", "malformed")
    command = request.get("command")
    if not isinstance(command, str) or not command:
        raise ControlError('request has no "command" string', "malformed")
    return request


async def _answer(line: bytes | None, handler: Handler, limit: int, pid: int) -> dict[str, Any]:
    try:
        if line is None:
            raise ControlError(f"request is larger than {limit} bytes", "too-large")
        request = parse_request(line)
        result = handler(request)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, Mapping):
            raise TypeError(f"handler returned {type(result).__name__}, not a mapping")
        reply = {"ok": True, "result": dict(result)}
        json.dumps(reply)  # fail here, as an internal error, not half-way through sending
        return reply
    except ControlError as exc:
        reason = exc.reason if exc.reason in ERROR_REASONS else "internal"
        # One line whatever the message holds (a handler's text, a repr of the client's).
        log.warning("control socket: refused a request from pid %d (%s): %s", pid, reason,
                    " ".join(str(exc).split()))
        return _error(reason, str(exc))  # type: ignore[arg-type]
    except Exception as exc:
        # A bug in a handler: the one case that deserves a traceback.
        log.exception("control request from pid %d failed", pid)
        return _error("internal", f"internal error: {type(exc).__name__}: {exc}")


class _Client:
    """One accepted connection, as the server's bookkeeping sees it."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.waiting = True
        """Still waiting for its request line (the first to be dropped)."""
        self.dropped = False


class _Clients:
    """The connections being served, oldest first, at most ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: list[_Client] = []

    def admit(self) -> _Client:
        """A new connection's entry; at the limit, the oldest is dropped to make room."""
        if len(self._open) >= self._limit:
            victim = next((c for c in self._open if c.waiting), self._open[0])
            self._open.remove(victim)
            victim.dropped = True
            victim.scope.cancel()
        client = _Client()
        self._open.append(client)
        return client

    def leave(self, client: _Client) -> None:
        if client in self._open:
            self._open.remove(client)


async def _serve_connection(
    conn: trio.socket.SocketType, handler: Handler, limit: int, client: _Client, clients: _Clients
) -> None:
    # Whatever one client does (reset, vanish, stall), it ends here: an
    # exception escaping this task would take the whole server down.
    pid = 0
    try:
        stream = trio.SocketStream(conn)
        async with stream:
            with client.scope:
                pid, uid = _peer_uid(conn)
                if uid != 0:
                    client.waiting = False
                    log.warning("control socket: refused pid %d uid %d (root only)", pid, uid)
                    reply = _error("forbidden", f"permission denied: the control socket answers only root (you are uid {uid})")
                else:
                    with trio.move_on_after(REQUEST_TIMEOUT) as reading:
                        line = await _read_request(stream, limit)
                    if reading.cancelled_caught:
                        log.info("control socket: pid %d sent no request within %g s; dropped", pid, REQUEST_TIMEOUT)
                        return
                    client.waiting = False
                    reply = None
                with trio.move_on_after(REPLY_TIMEOUT) as answering:
                    if reply is None:
                        reply = await _answer(line, handler, limit, pid)
                    await stream.send_all(json.dumps(reply).encode() + b"\n")
                if answering.cancelled_caught:
                    log.info("control socket: pid %d did not take its answer within %g s; dropped", pid, REPLY_TIMEOUT)
            if client.dropped:
                log.info("control socket: dropped pid %d's connection to make room for a new one (at most %d)",
                         pid, MAX_CLIENTS)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        log.debug("control client pid %d went away: %s", pid, exc)
    except Exception:
        log.exception("control connection failed")
    finally:
        clients.leave(client)


async def serve_control(
    path: str | os.PathLike[str],
    handler: Handler,
    *,
    max_request: int = MAX_REQUEST_BYTES,
    task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control socket at ``path`` until cancelled.

    ``handler(request)`` gets the parsed request (a dict with a ``command``
    string) and returns a JSON-serialisable mapping, or an awaitable of one;
    :func:`command_handler` builds one for the standard commands.
    ``task_status.started(path)`` is called once clients can connect.

    Resource handling: a stale socket at ``path`` (nobody listening) is
    removed first; the parent directory is created (0755) if missing. On exit,
    the socket file is removed if it is still ours. At most
    :data:`MAX_CLIENTS` connections are kept; each has
    :data:`REQUEST_TIMEOUT` seconds for its request and
    :data:`REPLY_TIMEOUT` for its answer (see the module's docstring).

    Error handling: a path that cannot be served raises
    :class:`ControlSocketError` (a :class:`~failoverd.cli.exitcodes.ProgramError`
    whose ``status`` is the daemon's exit code), :class:`ControlSocketInUse`
    if a live server is there; both before ``started``. Malformed, oversized
    or refused requests, and exceptions from the handler, get an error reply
    and are logged; they never end the server.
    """
    path = Path(path)
    listener, ours = await _open_listener(path)
    try:
        clients = _Clients(MAX_CLIENTS)
        log.info("control socket listening on %s", path)
        task_status.started(path)
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await listener.accept()
                nursery.start_soon(_serve_connection, conn, handler, max_request, clients.admit(), clients)
    finally:
        listener.close()
        _unlink_if_ours(path, ours)


def _unlink_if_ours(path: Path, ours: os.stat_result) -> None:
    # Another daemon may have replaced the file after us; leave theirs alone.
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino):
        os.unlink(path)


# --- the client --------------------------------------------------------------


def request(path: str | os.PathLike[str], command: str, *, timeout: float = CLIENT_TIMEOUT, **fields: Any) -> dict[str, Any]:
    """Send one command to the daemon at ``path`` and return its result.

    Raises :class:`ControlError` with ``reason`` ``"unavailable"`` (no socket,
    nobody listening, no answer in time), ``"forbidden"`` (not root),
    ``"protocol"`` (an answer that is not ours) or the server's reason.
    """
    path = Path(path)
    payload = json.dumps({"command": command, **fields}).encode() + b"\n"
    if len(payload) > MAX_REQUEST_BYTES:
        raise ControlError(f"request is larger than {MAX_REQUEST_BYTES} bytes", "too-large")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        # A blocking connect bounded by SO_SNDTIMEO waits while the daemon's
        # listen backlog is full; with settimeout() it would fail at once (EAGAIN).
        seconds, fraction = divmod(timeout, 1.0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(seconds), int(fraction * 1e6)))
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no control socket at {path}: is the daemon running?", "unavailable") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: run as root", "forbidden") from None
        except ConnectionRefusedError:
            raise ControlError(f"nobody is listening on {path} (a stale socket?)", "unavailable") from None
        except (BlockingIOError, TimeoutError):
            raise ControlError(f"the daemon at {path} did not accept within {timeout:g} s", "unavailable") from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}", "unavailable") from None
        sock.settimeout(timeout)
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (a refusal) and closed before reading: read that answer
        except TimeoutError:
            raise ControlError(f"the daemon at {path} did not read the request within {timeout:g} s", "unavailable") from None
        reply = _read_reply(sock, path, timeout)
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ControlError(f"unexpected answer from {path}: {reply!r:.200}", "protocol")
    if not reply["ok"]:
        raise ControlError(str(reply.get("error", "unspecified error")), str(reply.get("reason", "internal")))
    result = reply.get("result")
    if not isinstance(result, dict):
        raise ControlError(f"answer from {path} has no result object", "protocol")
    return result


# Replies carry a full state dump; bounded all the same.
_MAX_REPLY_BYTES = 16 * 1024 * 1024


def _read_reply(sock: socket.socket, path: Path, timeout: float) -> Any:
    buffer = bytearray()
    try:
        while b"\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            if len(buffer) > _MAX_REPLY_BYTES:
                raise ControlError(f"answer from {path} exceeds {_MAX_REPLY_BYTES} bytes", "protocol")
    except TimeoutError:
        raise ControlError(f"the daemon at {path} did not answer within {timeout:g} s", "unavailable") from None
    except ConnectionResetError:
        if b"\n" not in buffer:
            raise ControlError(f"the daemon at {path} closed the connection without answering", "unavailable") from None
    line, newline, _ = bytes(buffer).partition(b"\n")
    if not newline:
        raise ControlError(f"the daemon at {path} closed the connection without answering", "unavailable")
    try:
        return json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ControlError(f"answer from {path} is not JSON", "protocol") from None

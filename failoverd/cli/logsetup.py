"""Where the daemons' log lines go, without a log call ever waiting for them to get there.

``-d`` and ``-n``: the terminal (stderr), everything down to DEBUG; with
``-d -L facility`` also syslog. ``-x`` and background mode: syslog only, at
INFO and above, to the syslog socket with the chosen facility, so each
datagram starts with ``<facility*8 + severity>``.

Everything the package logs goes through the ``failoverd`` logger (modules
use ``logging.getLogger(__name__)``); other libraries' loggers are left alone.

Formats: ``text`` (the default: the terminal's ``time program LEVEL message``,
syslog's ``program[pid]: message``) or ``json`` (``--log-format json``): one
JSON object per line, for journald and log shippers, with ``time`` (UTC,
RFC 3339, milliseconds), ``program``, ``pid``, ``level``, ``message``, the
daemon's ``state`` when the line was logged, and where a line is about one:
``transition``, ``reason`` (what caused a state change), ``addresses`` and
``path``. Log calls attach those with ``extra=`` (:data:`EVENT_FIELDS`); the
state comes from :func:`report_state`.

Never blocking
--------------
A backup that freezes in a log write while it holds the master's addresses
keeps them when the master returns. A stalled journald or rsyslog (a syslog
socket nobody reads), or a stderr pipe nobody drains, must therefore cost the
daemon log lines, never time:

- The package logger has one handler, a :class:`BoundedQueueHandler`: the
  caller's thread formats the line and puts it on a bounded queue
  (``QUEUE_SIZE`` lines) without waiting. When the queue is full the line is
  dropped and counted.
- One listener thread (the standard library's
  :class:`~logging.handlers.QueueListener`) hands the queued lines to the
  targets. A target gets ``SEND_TIMEOUT`` seconds to take a line; a line it
  does not take in time is dropped and counted, and until it takes one again
  it is only offered lines without waiting, so a stalled target costs the
  listener one timeout, not one per line, and the queue keeps moving.
- The listener waits ``BURST_DELAY`` seconds after the first line of a
  burst before handing any on. Every line the listener handles is Python
  run on a second thread, which takes the GIL from the daemon's thread at
  its next system call: a failback's few log lines ("state waiting ->
  acquiring", "acquiring ...") used to hand the GIL back and forth dozens
  of times between receiving the backup's status and adding the address,
  milliseconds on a busy machine (strace, docs/benchmarks.md). Sleeping
  first (one short hand-over of the GIL to start the sleep), the listener
  stays off it while the daemon finishes what the burst is about; then it
  writes the whole burst. Lines reach the log
  ``BURST_DELAY`` later, in the same order; an idle daemon wakes no more.
- While the daemon's event loop works, its own lines are held back in the
  handler (:func:`hold_lines`, up to ``HELD_LINES`` of them) and queued
  only when the loop is about to wait for something (:func:`release_lines`,
  called by the runtime, see :mod:`failoverd.runtime.lifecycle`). Queueing
  a line wakes the listener; woken, it takes the queue's lock and then
  wants the GIL, and the loop's next log call or system call waits for it
  in turn, whatever the loop is doing: after the first line of a failback
  ("state waiting -> acquiring") the master's add came 6 - 8 ms late in
  three failbacks of six on a busy machine (timestamps in both daemons,
  docs/benchmarks.md), the burst delay notwithstanding. Held, the lines
  wake the listener once the address is added and the loop has nothing
  left to do. Each line is still formatted when it is logged; other
  threads' lines are queued at once.
- Lines lost are reported where they were lost, as soon as there is room
  again: ``N log messages lost (log target not accepting)``.
- :func:`shutdown` lets the listener drain the queue for at most
  ``FLUSH_BOUND`` seconds (plus one send timeout) and returns: an exit is
  never held up by a dead log target.

Resource handling: :func:`configure` starts the listener thread; the
programs call it after moving to the background, because a thread does not
survive a fork. A process that inherited a listener from its parent (a fork
after :func:`configure`) abandons it untouched, since its queue and locks may
have been copied mid-use: what the child logs before it configures again
goes nowhere. :func:`shutdown` stops the thread and closes the targets'
sockets.

Error handling: nothing here raises into a caller once logging runs; a line
that cannot be formatted is logged as such instead of a traceback on stderr
(which may be the stalled pipe). :func:`configure` raises
:class:`~failoverd.cli.exitcodes.ProgramError` (69) when the syslog socket cannot
be reached at start.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import select
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Literal

from failoverd.cli.config import DEFAULT_SYSLOG_SOCKET, RunMode
from failoverd.cli.exitcodes import EX_UNAVAILABLE, ProgramError

FACILITY_CODES = {
    "daemon": logging.handlers.SysLogHandler.LOG_DAEMON,
    "auth": logging.handlers.SysLogHandler.LOG_AUTH,
    "user": logging.handlers.SysLogHandler.LOG_USER,
    **{f"local{n}": logging.handlers.SysLogHandler.LOG_LOCAL0 + n for n in range(8)},
}

PACKAGE_LOGGER = "failoverd"

QUEUE_SIZE = 1000
"""Lines that may wait for the listener; more are dropped and counted."""
SEND_TIMEOUT = 1.0
"""Seconds a target may take to accept one line before it counts as stalled."""
FLUSH_BOUND = 2.0
"""Seconds :func:`shutdown` lets the listener drain the queue; what is left then is dropped."""
BURST_DELAY = 0.01
"""Seconds the listener lets a burst of lines gather before handing them on (see above)."""
HELD_LINES = 64
"""Lines the holding thread keeps back at most (see :func:`hold_lines`); the next one queues them all."""
LOST_MESSAGE = "%d log messages lost (log target not accepting)"

LogFormat = Literal["text", "json"]
EVENT_FIELDS = ("transition", "reason", "addresses", "path")
"""What a log call may attach with ``extra=`` for the JSON format."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring); never raises on odd extras."""

    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "program": self.program,
            "pid": record.process,
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        state = getattr(record, "state", None)
        if state is not None:
            event["state"] = state
        for name in EVENT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                event[name] = sorted(map(str, value)) if isinstance(value, (set, frozenset, list, tuple)) else str(value)
        return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


class _StateField(logging.Filter):
    """Stamps every line with the daemon's state as it is when the line is logged."""

    def __init__(self) -> None:
        super().__init__()
        self.source: Callable[[], str] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        source = self.source
        if source is not None and not hasattr(record, "state"):
            try:
                record.state = source()
            except Exception:  # a line must never be lost to its decoration
                pass
        return True


_state_field = _StateField()


def report_state(source: Callable[[], str] | None) -> None:
    """Stamp the daemon's state (``source()``) on every line from now on; None stops it."""
    _state_field.source = source


def lost_record(count: int) -> logging.LogRecord:
    """The line that reports ``count`` lost lines (a warning of this module's logger).

    It carries the count (``lost_count``), so that if it is lost in turn,
    the next report includes the lines it stood for.
    """
    return logging.makeLogRecord(
        {"name": __name__, "levelno": logging.WARNING, "levelname": "WARNING", "msg": LOST_MESSAGE % count,
         "lost_count": count}
    )


def _lines_in(record: object) -> int:
    """How many log lines are lost when ``record`` is: a report stands for those it counts."""
    return getattr(record, "lost_count", 1)


# --- the targets -----------------------------------------------------------------


class Target(logging.Handler):
    """A log target that takes a line within a bound, or drops and counts it.

    Subclasses say how a line is encoded and delivered; this class keeps the
    rule from the module docstring: the first line a stalled target refuses
    costs ``SEND_TIMEOUT``, the next ones are offered without waiting until
    one is taken, and then the count of those lost goes out first.
    ``lost`` is the total this target dropped.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0
        self._unreported = 0
        self._stalled = False

    def encode(self, record: logging.LogRecord) -> bytes:
        raise NotImplementedError

    def deliver(self, data: bytes, timeout: float) -> bool:
        """Hand ``data`` to the target within ``timeout`` seconds (0: without waiting); False if it did not take it."""
        raise NotImplementedError

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.encode(record)
            taken = self.report_lost() and self._send(data)
        except Exception:
            # A bug here must not end the listener thread (nothing would be logged again).
            self.handleError(record)
            return
        if not taken:
            self._lose(record)

    def report_lost(self) -> bool:
        """Deliver the count of lines lost since the last one taken, if any; False if that failed too.

        Called with the handler's lock held (from :meth:`emit`) or by the
        listener when the queue has run dry (then it takes the lock).
        """
        with self.lock:  # type: ignore[union-attr]
            if not self._unreported:
                return True
            if not self._send(self.encode(lost_record(self._unreported))):
                return False
            self._unreported = 0
            return True

    def handleError(self, record: logging.LogRecord) -> None:
        # Never a traceback on stderr: stderr may be the very target that stalls.
        self._lose(record)

    def _send(self, data: bytes) -> bool:
        taken = self.deliver(data, 0.0 if self._stalled else SEND_TIMEOUT)
        self._stalled = not taken
        return taken

    def _lose(self, record: logging.LogRecord) -> None:
        self.lost += _lines_in(record)
        self._unreported += _lines_in(record)


class SyslogTarget(Target):
    """``<PRI>program[pid]: message`` datagrams to a syslog socket (AF_UNIX, like /dev/log).

    The socket is connected at construction (so a wrong path fails at once)
    and again after the syslog daemon restarted (a send refused with
    anything but "full": reconnect once and resend).
    """

    def __init__(self, address: str, facility: int) -> None:
        super().__init__()
        self.address = address
        self.facility = facility
        self._shut = False
        self._socket: socket.socket | None = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            raise
        return sock

    def encode(self, record: logging.LogRecord) -> bytes:
        # The standard handler's level→severity tables, so the codes are the ones it sends.
        names = logging.handlers.SysLogHandler
        severity = names.priority_names[names.priority_map.get(record.levelname, "warning")]
        priority = self.facility * 8 + severity
        return f"<{priority}>{self.format(record)}\x00".encode("utf-8", "backslashreplace")

    def deliver(self, data: bytes, timeout: float) -> bool:
        for _attempt in range(2):
            if self._shut:
                return False  # closed while a listener that missed its stop bound still runs
            if self._socket is None:
                try:
                    self._socket = self._connect()
                except OSError:
                    return False
            # settimeout(0) is a non-blocking send, settimeout(t) one that waits at most t.
            self._socket.settimeout(timeout)
            try:
                self._socket.send(data)
                return True
            except (BlockingIOError, TimeoutError):
                return False
            except OSError:
                # The syslog daemon restarted (its socket is a new one): reconnect.
                self._socket.close()
                self._socket = None
        return False

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._shut = True
            if self._socket is not None:
                self._socket.close()
                self._socket = None
        super().close()


class TerminalTarget(Target):
    """Lines on a stream (stderr), written so that a reader that stopped reading costs a bounded wait.

    Python's own stream would wait for the reader (a full pipe, a terminal
    stopped with ^S), holding its lock, and the interpreter's exit would
    then wait too. So a stream with a descriptor is written with
    ``os.write``, at most ``PIPE_BUF`` bytes at a time, when ``poll`` says
    there is room. A pipe or a terminal is written through a descriptor of
    our own, opened anew (``/proc/self/fd``) with ``O_NONBLOCK``, so that a
    write cannot wait even when someone else takes the room between our
    poll and our write; the flag is not set on the inherited descriptor,
    whose open file is shared with the shell or supervisor that gave it.
    Where that open fails (no /proc), and for sockets and files, the
    inherited descriptor is written after the poll, and that race is the one
    case that can still wait. A stream without a descriptor (a test's
    capture buffer) is written as a stream.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream
        self._own_fd: int | None = None
        try:
            fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        if fd is not None:
            self._own_fd = _reopen_nonblocking(fd)
        self._fd = self._own_fd if self._own_fd is not None else fd
        self._midline = False
        self._shut = False

    def encode(self, record: logging.LogRecord) -> bytes:
        return (self.format(record) + "\n").encode("utf-8", "backslashreplace")

    def deliver(self, data: bytes, timeout: float) -> bool:
        if self._shut:
            return False  # closed while a listener that missed its stop bound still runs
        if self._fd is None:
            self.stream.write(data.decode("utf-8", "replace"))
            self.stream.flush()
            return True
        if self._midline:
            # The last line was cut off by a timeout: do not glue this one to it.
            data = b"\n" + data
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                wait_ms = max(0, round((deadline - time.monotonic()) * 1000))
                events = poller.poll(wait_ms)
                if not events or not events[0][1] & select.POLLOUT:
                    break
                try:
                    written += os.write(self._fd, view[written : written + select.PIPE_BUF])
                except BlockingIOError:
                    # The room went to someone else: try again until the deadline.
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        except OSError:
            pass  # a closed pipe or terminal: the line is lost like any other
        if written:
            self._midline = written < len(view)
        return written == len(view)

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._shut = True
            if self._own_fd is not None:
                os.close(self._own_fd)
                self._own_fd = None
        super().close()


def _reopen_nonblocking(fd: int) -> int | None:
    """A new, non-blocking descriptor for the pipe or terminal on ``fd``, or None (any other kind, or no /proc)."""
    try:
        kind = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(kind) or stat.S_ISCHR(kind)):
            return None
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None


def syslog_problem(address: str) -> str | None:
    """Why nothing can be sent to the syslog socket at ``address``, or None."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(address)
    except OSError as exc:
        return f"cannot reach syslog at {address}: {exc.strerror or exc}"
    finally:
        probe.close()
    return None


def syslog_handler(
    program: str, facility: str, address: str = DEFAULT_SYSLOG_SOCKET, log_format: LogFormat = "text"
) -> Target:
    """A target writing ``<PRI>program[pid]: message`` to the syslog socket.

    Raises ProgramError (69) when the socket cannot be reached now: a daemon
    starting with a mistyped socket must say so while it has a terminal.
    Once running, a syslog restart is survived (the target reconnects), and
    a stalled one costs lines, not time (see the module docstring).
    """
    problem = syslog_problem(address)
    if problem is not None:
        raise ProgramError(EX_UNAVAILABLE, f"{problem}; run with -d to log to the terminal")
    try:
        handler = SyslogTarget(address, FACILITY_CODES[facility])
    except OSError as exc:
        raise ProgramError(
            EX_UNAVAILABLE, f"cannot reach syslog at {address}: {exc.strerror or exc}; run with -d to log to the terminal"
        ) from None
    # %(process)d is taken when each line is logged, so it is the daemon's pid
    # after moving to the background, not the launcher's.
    if log_format == "json":
        # The syslog tag stays (journald and rsyslog route by it); the message is the JSON object.
        json_formatter = JsonFormatter(program)
        tag = logging.Formatter(f"{program}[%(process)d]: ")
        handler.setFormatter(_Prefixed(tag, json_formatter))
    else:
        handler.setFormatter(logging.Formatter(f"{program}[%(process)d]: %(message)s"))
    return handler


class _Prefixed(logging.Formatter):
    def __init__(self, prefix: logging.Formatter, body: logging.Formatter) -> None:
        super().__init__()
        self.prefix, self.body = prefix, body

    def format(self, record: logging.LogRecord) -> str:
        return self.prefix.format(record) + self.body.format(record)


def terminal_handler(program: str, log_format: LogFormat = "text") -> Target:
    handler = TerminalTarget(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(program))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s.%(msecs)03d {program} %(levelname)s %(message)s", "%H:%M:%S")
        )
    return handler


# --- the queue and its listener ----------------------------------------------------


class BoundedQueueHandler(logging.handlers.QueueHandler):
    """The package logger's handler: formats in the caller, queues without waiting, drops and counts when full.

    ``dropped`` is the total dropped here. The count of lines dropped since
    the last one queued goes onto the queue (as :func:`lost_record`) before
    the next line that finds room, or when the listener has caught up.
    """

    def __init__(self, log_queue: queue.Queue[logging.LogRecord | object]) -> None:
        super().__init__(log_queue)
        self.dropped = 0
        self._unreported = 0
        self._holder: int | None = None
        self._held: list[logging.LogRecord] = []

    def enqueue(self, record: logging.LogRecord) -> None:
        # Called by emit() with self.lock held, like report_lost() and release_held().
        if self._holder is not None and self._holder == threading.get_ident():
            if len(self._held) < HELD_LINES:
                self._held.append(record)
                return
            self._queue_held()
        if not self._put_report() or not self._put(record):
            self._drop(record)

    def hold(self) -> None:
        """Keep the calling thread's lines back (formatted) until :meth:`release_held`; one thread at a time."""
        with self.lock:  # type: ignore[union-attr]
            self._queue_held()
            self._holder = threading.get_ident()

    def stop_holding(self) -> None:
        """Queue what is held and queue every line at once again."""
        with self.lock:  # type: ignore[union-attr]
            self._queue_held()
            self._holder = None

    def release_held(self) -> None:
        """Queue the lines held so far, in order (dropped and counted if the queue is full)."""
        if not self._held:  # the loop calls this before every wait: nothing held is the common case
            return
        with self.lock:  # type: ignore[union-attr]
            self._queue_held()

    @property
    def held(self) -> int:
        """Lines held back now."""
        return len(self._held)

    def _queue_held(self) -> None:
        held, self._held = self._held, []
        for record in held:
            if not self._put_report() or not self._put(record):
                self._drop(record)

    def report_lost(self) -> None:
        """Queue the count of dropped lines now, if there is room."""
        with self.lock:  # type: ignore[union-attr]
            self._put_report()

    def handleError(self, record: logging.LogRecord) -> None:
        # A line that cannot be formatted (a bug in a log call): say which,
        # through the queue, instead of a traceback on a possibly stalled stderr.
        error = sys.exc_info()[1]
        try:
            text = f"cannot format a log line ({type(error).__name__}: {error}): {record.msg!r} % {record.args!r}"
        except Exception:
            text = f"cannot format a log line ({type(error).__name__}) logged at {record.pathname}:{record.lineno}"
        replacement = logging.makeLogRecord(
            {"name": record.name, "levelno": logging.ERROR, "levelname": "ERROR", "msg": text[:1000]}
        )
        if not self._put(replacement):
            self._drop(replacement)

    def _drop(self, record: logging.LogRecord) -> None:
        self.dropped += _lines_in(record)
        self._unreported += _lines_in(record)

    def _put_report(self) -> bool:
        if not self._unreported:
            return True
        if not self._put(lost_record(self._unreported)):
            return False
        self._unreported = 0
        return True

    def _put(self, record: object) -> bool:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            return False
        return True


class _Flush:
    """A queue entry that only says "the listener got this far"."""

    def __init__(self) -> None:
        self.reached = threading.Event()


class BoundedListener(logging.handlers.QueueListener):
    """The listener thread, with a stop that is bounded and reports of lost lines when it catches up."""

    _sentinel: object = None
    """What ends the thread: the base class's marker (None), stated here with its type."""

    def __init__(self, log_queue: queue.Queue[object], source: BoundedQueueHandler, *targets: Target) -> None:
        super().__init__(log_queue, *targets)
        self.log_queue = log_queue
        """The queue itself, typed (the base class only promises ``put_nowait``/``get``)."""
        self.source = source
        self.targets = targets
        self.pid = os.getpid()
        """The process that started the thread (a forked child has no such thread)."""
        self.discarded = 0
        """Lines left in the queue when the stop's bound ran out."""
        self._deadline: float | None = None

    def start(self) -> None:
        super().start()
        assert self._thread is not None
        self._thread.name = "log-listener"

    def dequeue(self, block: bool) -> logging.LogRecord:
        # The queue holds records, _Flush markers and the sentinel; handle() tells them apart.
        try:
            return self.log_queue.get_nowait()  # type: ignore[return-value]
        except queue.Empty:
            if not block:
                raise
        record = self.log_queue.get()
        # The first line after a quiet spell: let its burst finish first (see the module).
        time.sleep(BURST_DELAY)
        return record  # type: ignore[return-value]

    def handle(self, record: logging.LogRecord) -> None:
        if isinstance(record, _Flush):
            record.reached.set()
            return
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.discarded += _lines_in(record)
            return
        super().handle(record)
        if self.log_queue.empty():
            # Caught up: there is room for the count of lines dropped meanwhile,
            # and a target that came back can say what it lost.
            self.source.report_lost()
            if self.log_queue.empty():
                for target in self.targets:
                    target.report_lost()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` until every line queued before this call was handed on."""
        marker = _Flush()
        try:
            self.log_queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.reached.wait(timeout)

    def stop_within(self, bound: float) -> bool:
        """Let the thread drain the queue for up to ``bound`` seconds, then end it; True if it ended.

        Lines still queued at the bound are discarded (counted in
        ``discarded``). The thread may be in a send when the bound runs out,
        so it gets one more ``SEND_TIMEOUT``; if it still has not ended
        (it is a daemon thread) it is left to the exit.
        """
        thread = self._thread
        if thread is None:
            return True
        self._deadline = time.monotonic() + bound
        end = self._deadline + SEND_TIMEOUT
        try:
            # A full queue empties quickly once the deadline passes (lines are discarded).
            self.log_queue.put(self._sentinel, timeout=max(0.0, end - time.monotonic()))
        except queue.Full:
            return False
        thread.join(max(0.0, end - time.monotonic()))
        if thread.is_alive():
            return False
        self._thread = None
        return True


# --- configuration -------------------------------------------------------------------


class _Pipeline:
    """What :func:`configure` installed: the queue handler, the listener and the targets."""

    def __init__(self, targets: list[Target]) -> None:
        log_queue: queue.Queue[object] = queue.Queue(QUEUE_SIZE)
        self.handler = BoundedQueueHandler(log_queue)
        self.targets = targets
        self.listener = BoundedListener(log_queue, self.handler, *targets)

    def stop(self, bound: float) -> None:
        if self.listener.pid == os.getpid():
            # Lines still held, then the count of lines dropped at the very end, if there is room.
            self.handler.stop_holding()
            self.handler.report_lost()
            self.listener.stop_within(bound)
        # else: inherited through a fork; the parent's thread is not here,
        # and its queue must not be touched (its lock may have been copied
        # taken). Only our copies of the sockets go.
        for target in self.targets:
            target.close()
        self.handler.close()


_active: _Pipeline | None = None
_active_lock = threading.Lock()


def configure(
    program: str,
    run_mode: RunMode,
    facility: str,
    *,
    syslog_requested: bool = False,
    syslog_address: str = DEFAULT_SYSLOG_SOCKET,
    log_format: LogFormat = "text",
) -> logging.Logger:
    """Point the package logger at the targets for ``run_mode``; return it.

    Replaces (and closes) any handlers a previous call installed, so calling
    it again after moving to the background gives fresh sockets and a
    listener thread of this process.
    """
    targets: list[Target] = []
    if run_mode in ("debug", "no_run"):
        targets.append(terminal_handler(program, log_format))
        level = logging.DEBUG
    else:
        level = logging.INFO
    if run_mode in ("daemon", "no_fork") or (run_mode == "debug" and syslog_requested):
        targets.append(syslog_handler(program, facility, syslog_address, log_format))
    shutdown()
    pipeline = _Pipeline(targets)
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.propagate = False
    logger.setLevel(level)
    pipeline.listener.start()
    pipeline.handler.addFilter(_state_field)
    logger.addHandler(pipeline.handler)
    global _active
    with _active_lock:
        _active = pipeline
    return logger


def hold_lines() -> None:
    """Hold the calling thread's lines back until :func:`release_lines` (the daemon's event loop; see the module)."""
    pipeline = _active
    if pipeline is not None:
        pipeline.handler.hold()


def release_lines() -> None:
    """Queue the lines held back so far (the loop is about to wait: the listener may have the GIL now)."""
    pipeline = _active
    if pipeline is not None:
        pipeline.handler.release_held()


def held_lines() -> int:
    """Lines held back now (0 without logging configured)."""
    pipeline = _active
    return 0 if pipeline is None else pipeline.handler.held


def stop_holding_lines() -> None:
    """Queue what is held and hold nothing back from now on."""
    pipeline = _active
    if pipeline is not None:
        pipeline.handler.stop_holding()


def flush(timeout: float = FLUSH_BOUND) -> bool:
    """Wait up to ``timeout`` until every line logged so far was handed to its targets; True if it was."""
    pipeline = _active
    if pipeline is None or pipeline.listener.pid != os.getpid():
        return True
    pipeline.handler.release_held()
    return pipeline.listener.flush(timeout)


def shutdown(bound: float = FLUSH_BOUND) -> None:
    """Drain the queue for up to ``bound`` seconds, stop the listener, close every handler of the package logger."""
    global _active
    logger = logging.getLogger(PACKAGE_LOGGER)
    with _active_lock:
        pipeline, _active = _active, None
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        if pipeline is None or handler is not pipeline.handler:
            handler.close()
    if pipeline is not None:
        pipeline.stop(bound)


def _after_fork_in_child() -> None:
    # The child has no listener thread, and the queue's lock may have been
    # copied while the parent's listener held it: a line logged before the
    # child configures again goes nowhere rather than into that queue. (A
    # NullHandler, so that the logging module's last resort does not write
    # it to stderr either.)
    pipeline = _active
    if pipeline is not None:
        logger = logging.getLogger(PACKAGE_LOGGER)
        logger.removeHandler(pipeline.handler)
        logger.addHandler(logging.NullHandler())


os.register_at_fork(after_in_child=_after_fork_in_child)

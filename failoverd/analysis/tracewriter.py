"""The trace writer: records the detector's inputs in a thread, never blocking the daemon.

The format (header, events, their lines, the reader) is
:mod:`failoverd.analysis.trace`; this module only puts lines on the disk.

Rules of this module
--------------------
- The writer never blocks its caller on the disk: a line is formatted in the
  caller and handed to a writer thread; if the disk cannot keep up, or
  refuses lines (full, failing), they are dropped and counted, the trace says
  how many (``lost``), and recording goes on when the disk takes lines again.
- A trace file is root's only (0600) and never written through a symbolic
  link or to anything but a regular file.
- The key is never written: a trace may be mailed to a colleague.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from failoverd.analysis.trace import (
    MAGIC,
    TraceHeader,
    check_token,
    format_conflict,
    format_health,
    format_link,
    format_result,
    format_stop,
)
from failoverd.core.actions import Result
from failoverd.core.addresses import Triplet

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MIN_MAX_BYTES = 4096
_END_ROOM = 64
"""Bytes kept free at the size bound for the closing ``end ... full`` line."""
CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`TraceWriter.close` waits for the writer thread (a hung disk must not hang the stop)."""


def open_trace_file(path: Path) -> int:
    """A descriptor for writing a new trace at ``path``: a regular file, mode 0600, emptied.

    A trace holds every heartbeat and the master's addresses, and root
    writes it: it is created private (and an older file made private), and
    never written through a symbolic link (``O_NOFOLLOW``), which would let
    whoever can write the directory point root at another file. Anything but
    a regular file is refused, without waiting: opening a FIFO for writing
    waits for a reader (hence ``O_NONBLOCK`` on the open), a device is not a
    trace. ``O_APPEND``, so that after a failed write (disk full) the file,
    cut back to its last whole line, is written on at its end.

    Raises ValueError for a path that is not a regular file, OSError when it
    cannot be opened.
    """
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        _require_regular(existing.st_mode)
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600
    )
    try:
        # Again on what was opened: the name may have been swapped since the lstat.
        _require_regular(os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _require_regular(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISLNK(mode):
        raise ValueError("it is a symbolic link; a trace is written only to a regular file, never through a link")
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISDIR: "a directory", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "not a file")
    raise ValueError(f"it is {kind}, not a regular file")


class TraceWriter:
    """Records a detector's inputs to ``path`` without blocking the caller.

    Each call formats one line and queues it; a writer thread appends queued
    lines to the file at least every ``flush_interval`` seconds.

    Size bound: the file never grows past ``max_bytes``. With ``rotate``
    (default) the full file is renamed to ``path.1`` (replacing an older one)
    and a new file is started with the same header marked ``continued``; so at
    most about twice ``max_bytes`` are on disk. Without ``rotate`` recording
    stops with an ``end ... full`` line and later events are discarded.

    Overload and write errors: nothing the disk does reaches the caller.
    If more than ``max_pending`` lines wait for the disk, further events are
    dropped; lines the disk refuses (full, failing) are dropped too, the
    file is cut back to its last whole line, and the next batch is tried
    again, so recording resumes when space returns. Either way the loss is
    counted in :attr:`dropped` and a ``lost`` line in the trace says how many
    where they went missing. :attr:`error` keeps the last write error.

    Resource handling: the file is opened by the constructor, private and
    never through a link (see :func:`open_trace_file`; a bad path fails at
    once); :meth:`close` writes an ``end`` line, flushes and joins the
    thread, waiting at most ``CLOSE_TIMEOUT`` for a disk that hangs.
    Each datagram line carries the wall-clock time from ``wall_clock`` (so an
    operator can find "03:12"); ``None`` leaves it out.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: TraceHeader,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        rotate: bool = True,
        flush_interval: float = 1.0,
        max_pending: int = 100_000,
        wall_clock: Callable[[], float] | None = time.time,
    ) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}")
        self.path = Path(path)
        self.header = header
        self.max_bytes = max_bytes
        self.rotate = rotate
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._wall_clock = wall_clock
        self.dropped = 0
        self.rotations = 0
        self.error: BaseException | None = None
        self._header_text = MAGIC + "header " + header.to_json() + "\n"
        if len(self._header_text) * 4 > max_bytes:
            raise ValueError(f"max_bytes {max_bytes} leaves no room for events after the header")
        self._pending: list[str] = []
        self._unreported_drops = 0
        self._last_time = header.start
        self._full = False
        self._closed = False
        self._writing = False
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # The writer thread's own: lines the disk refused, not yet reported in the file.
        self._unwritten = 0
        self._unwritten_time = header.start
        self._fd: int | None = None
        self._size = 0
        continued = MAGIC + "header " + dataclasses.replace(header, continued=True).to_json() + "\n"
        self._longest_line = max_bytes - _END_ROOM - len(continued)
        self._start_file(self._header_text)
        self._thread = threading.Thread(target=self._run, name=f"trace-writer {self.path}", daemon=True)
        self._thread.start()

    # --- the caller's side: cheap, never touches the disk ---

    def datagram(self, now: float, data: bytes, source: str, path: str, verdict: str) -> None:
        """``Detector.receive_datagram(now, data, source, path)`` was called; ``verdict`` is its ``last_verdict``."""
        check_token(path, "path")
        check_token(source, "source")
        check_token(verdict, "verdict")
        wall_text = "-" if self._wall_clock is None else repr(self._wall_clock())
        self._queue(now, f"d {float(now)!r} {wall_text} {path} {source} {verdict} {data.hex() if data else '-'}\n")

    def timer(self, now: float) -> None:
        """``Detector.handle_timer(now)`` was called."""
        self._queue(now, f"t {float(now)!r}\n")

    def result(self, now: float, result: Result) -> None:
        """``Detector.action_done(now, result)`` was called."""
        self._queue(now, format_result(now, result) + "\n")

    def conflict(self, now: float, addresses: Iterable[Triplet]) -> None:
        """``Detector.conflict_seen(now, addresses)`` was called."""
        self._queue(now, format_conflict(now, addresses) + "\n")

    def health(self, now: float, healthy: bool, reason: str) -> None:
        """``Detector.health_changed(now, healthy, reason)`` was called."""
        self._queue(now, format_health(now, healthy, reason) + "\n")

    def link(self, now: float, interface: str, up: bool) -> None:
        """``Detector.link_changed(now, interface, up)`` was called."""
        self._queue(now, format_link(now, interface, up) + "\n")

    def stop(self, now: float, release: bool) -> None:
        """``Detector.shutdown(now, release=release)`` was called."""
        self._queue(now, format_stop(now, release) + "\n")

    def flush(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout``) until every queued line has been written or counted as lost."""
        with self._wake:
            self._wake.notify_all()
            self._wake.wait_for(
                lambda: (not self._pending and not self._writing) or not self._thread.is_alive(),
                timeout,
            )

    def close(self, now: float | None = None, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop recording; ``now`` (the time of the last event if omitted) is written as the end.

        Waits up to ``timeout`` for the writer thread; a thread still stuck
        in a write then (a hung disk) is left behind (it is a daemon thread,
        and writes nothing more once that write returns), and :attr:`error`
        says so.
        """
        with self._wake:
            if self._closed:
                # Once is enough: a second close (leaving a with block) must not wait for a hung disk again.
                return
            end = self._last_time if now is None else max(float(now), self._last_time)
            if not self._full:
                self._append_drop_marker()
                self._pending.append(f"end {end!r}\n")
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._lock:
                self.error = TimeoutError(f"the trace writer was still writing {self.path} after {timeout:g} s")

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _queue(self, now: float, line: str) -> None:
        with self._lock:
            if self._closed or self._full:
                return
            if now < self._last_time:
                raise ValueError(f"trace time goes backwards: {now!r} after {self._last_time!r}")
            self._last_time = float(now)
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                self._unreported_drops += 1
                return
            self._append_drop_marker()
            self._pending.append(line)
            if len(self._pending) == 1:
                self._wake.notify()

    def _append_drop_marker(self) -> None:
        if self._unreported_drops:
            self._pending.append(f"lost {self._last_time!r} {self._unreported_drops}\n")
            self._unreported_drops = 0

    # --- the writer thread ---

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    if not self._pending and not self._closed:
                        self._wake.wait(self.flush_interval)
                    lines, self._pending = self._pending, []
                    closing = self._closed
                    self._writing = bool(lines)
                if lines and not self._full:
                    self._write(lines)
                with self._wake:
                    self._writing = False
                    self._wake.notify_all()
                    if closing and not self._pending:
                        break
        finally:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError as exc:
                    self.error = exc
                self._fd = None
            with self._wake:
                self._wake.notify_all()

    def _write(self, lines: list[str]) -> None:
        """Append ``lines`` in order; what the disk refuses is counted, and reported by the next write that works."""
        if self._unwritten:
            lines = [f"lost {self._unwritten_time!r} {self._unwritten}\n", *lines]
            self._unwritten = 0
        done = 0
        try:
            while done < len(lines) and not self._full:
                done = self._append(lines, done)
        except (OSError, ValueError) as exc:
            # ValueError: something that is not a regular file took the path before a new file was started.
            refused = lines[done:]
            with self._lock:
                self.error = exc
                # "lost" lines stand for drops counted already; an end line is no event.
                self.dropped += sum(1 for line in refused if not line.startswith(("lost ", "end ")))
            self._unwritten += sum(_events_in(line) for line in refused)
            self._unwritten_time = self._last_time_of(refused[-1])

    def _append(self, lines: list[str], start: int) -> int:
        """Write ``lines[start:]`` up to the size bound (rotating or ending there); return how many are done.

        Raises OSError from the disk, after cutting the file back to its last
        whole line, so nothing half written is ever followed by more.
        """
        if self._fd is None:
            header = dataclasses.replace(self.header, continued=True)
            self._start_file(MAGIC + "header " + header.to_json() + "\n")
        room = self.max_bytes - _END_ROOM - self._size
        end, size = start, 0
        while end < len(lines) and size + len(lines[end]) <= room:
            size += len(lines[end])
            end += 1
        if end == start:
            # Not even the next line fits.
            if len(lines[start]) > self._longest_line:
                # Nor would it in a file of its own (a datagram as large as UDP allows, and a
                # small bound): it is lost, and the trace says so in its place.
                with self._lock:
                    self.dropped += 1
                lines[start] = f"lost {self._last_time_of(lines[start])!r} 1\n"
                return start
            if self.rotate:
                self._rotate()
                return start
            self._write_all(f"end {self._last_time_of(lines[start])!r} full\n".encode("ascii"))
            with self._lock:
                self._full = True
                self._pending = []
            return len(lines)
        self._write_all("".join(lines[start:end]).encode("ascii"))
        return end

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += os.write(self._fd, view[written:])
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise
        self._size += written

    def _start_file(self, header_text: str) -> None:
        """Open a new file at ``path`` and write its header (errors propagate; the file is then not used)."""
        fd = open_trace_file(self.path)
        try:
            data = header_text.encode("ascii")
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        except BaseException:
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)
            raise
        self._fd, self._size = fd, len(data)

    def _rotate(self) -> None:
        """``path`` becomes ``path.1``; the next write starts a new file (again, if that fails)."""
        assert self._fd is not None
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        os.close(self._fd)
        self._fd = None
        self.rotations += 1

    @staticmethod
    def _last_time_of(line: str) -> float:
        return float(line.split(" ", 2)[1])


def _events_in(line: str) -> int:
    """How many events are missing from the trace if ``line`` is: a ``lost`` line stands for its count."""
    if line.startswith("lost "):
        return int(line.split(" ")[2])
    return 0 if line.startswith("end ") else 1



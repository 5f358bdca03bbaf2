"""The daemons' side of notification: run NotifyFailover, bounded, never failing the caller.

A takeover must never wait for mail. So notification runs the configured
notify command (``NotifyFailover`` by default, replaceable by the
administrator, as in the original) as a child process, under a timeout, and
reports the outcome in the log and in its return value instead of raising.
The runtime hands each action to the notifier and goes on at once::

    notifier = Notifier(command=config.notify_command)
    notifier.start_soon(nursery, action)        # a core Notify or Alarm action

The notifier sends from a bounded queue in a task of its own, one mail at a
time: a relay that accepts connections and then says nothing (a stalled MTA)
costs that task a timeout per mail, and mails beyond the bound are dropped
and counted, never a crowd of waiting children (see :class:`Notifier`).

Resource handling: the child runs in a session (and process group) of its own.
When the timeout expires, or the calling task is cancelled, the whole group
receives SIGKILL, so neither the command nor anything it started is left
behind; the child is always reaped before the call returns.

Error handling: every failure (command missing, non-zero exit, timeout) is
logged on the ``failoverd.mail`` logger and returned as a
:class:`NotifyOutcome`; nothing is raised. Cancellation is the one exception:
``trio.Cancelled`` propagates as Trio requires, after the child is killed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Literal

import trio
import trio.lowlevel

from failoverd.core.actions import Alarm, Notify
from failoverd.core.addresses import Triplet

log = logging.getLogger("failoverd.mail")

DEFAULT_NOTIFY_PROGRAM = "NotifyFailover"
DEFAULT_NOTIFY_TIMEOUT = 30.0
"""Seconds the notify command may take; NotifyFailover's own SMTP timeout is shorter."""

# What we keep of the child's stderr for the log: enough for a traceback's
# last lines, never an unbounded buffer.
_STDERR_LIMIT = 4096
# After SIGKILL a process dies at once unless stuck in the kernel; this only
# stops a wedged child from wedging the daemon too.
_REAP_BOUND = 5.0

MAIL_QUEUE = 16
"""Mails that may wait behind the one being sent; more are dropped and counted."""

Direction = Literal["up", "down"]
AlarmLevel = Literal["info", "warning", "error", "critical"]
AddressLike = Triplet | IPv4Address | str
Command = str | Sequence[str]


@dataclass(frozen=True)
class NotifyOutcome:
    """What became of one notification.

    ``returncode`` is the command's exit status (``None`` if it could not be
    started or was killed at the timeout); ``detail`` says what went wrong, or
    is empty on success.
    """

    ok: bool
    argv: tuple[str, ...]
    returncode: int | None = None
    timed_out: bool = False
    detail: str = ""


def default_notify_command() -> list[str]:
    """The NotifyFailover that belongs to this installation.

    Preferred: the console script beside the running interpreter (a virtual
    environment's ``bin``, which a systemd unit's PATH does not include); then
    one on PATH; else this very package run with ``-m``.
    """
    return resolve_command(DEFAULT_NOTIFY_PROGRAM)


def resolve_command(command: Command) -> list[str]:
    """Turn a configured notify command into an argv.

    A string is one program (a path, or a name looked up as described in
    :func:`default_notify_command`); it is not split on spaces, so a path with
    spaces works and nothing is interpreted by a shell. A sequence is used as
    given.
    """
    if not isinstance(command, str):
        argv = list(command)
        if not argv:
            raise ValueError("the notify command is empty")
        return argv
    if not command:
        raise ValueError("the notify command is empty")
    if "/" in command:
        return [command]
    beside_interpreter = Path(sys.executable).parent / command
    if os.access(beside_interpreter, os.X_OK):
        return [str(beside_interpreter)]
    on_path = shutil.which(command)
    if on_path is not None:
        return [on_path]
    if command == DEFAULT_NOTIFY_PROGRAM:
        return [sys.executable, "-m", "failoverd.programs.notifyfailover"]
    return [command]


def _address_text(address: AddressLike) -> str:
    if isinstance(address, Triplet):
        return str(address.address)
    return str(address)


def _address_args(addresses: Iterable[AddressLike]) -> list[str]:
    # Sorted numerically and deduplicated, so the mail reads the same
    # whatever set order the core produced.
    texts = {_address_text(a) for a in addresses}
    return sorted(texts, key=_numeric)


def _numeric(text: str) -> tuple[int, int, str]:
    """IPv4 first, then IPv6, each in numeric order; anything else last, as text."""
    try:
        address = ip_address(text)
    except ValueError:
        return (7, 0, text)
    return (address.version, int(address), text)


def _kill_group(process: trio.Process) -> None:
    # start_new_session made the child the leader of its own group, so the
    # group id is its pid; the id cannot be reused while any member lives.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _collect(stream: trio.abc.ReceiveStream, sink: bytearray, eof: trio.Event) -> None:
    async with stream:
        async for chunk in stream:
            room = _STDERR_LIMIT - len(sink)
            if room > 0:
                sink += chunk[:room]
    eof.set()


def _last_lines(stderr: bytes, lines: int = 3) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return " | ".join(text.splitlines()[-lines:])


async def run_notify_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_NOTIFY_TIMEOUT,
) -> NotifyOutcome:
    """Run ``argv`` to completion or until ``timeout``; failures are returned, not raised.

    Only a programming error (a timeout that is not positive) raises, and
    ``trio.Cancelled`` propagates after the child is killed.

    The command has ``timeout`` seconds to exit and close its stderr; whatever
    of its process group is still alive then is killed.
    """
    if not timeout > 0:
        raise ValueError(f"notify timeout must be positive, not {timeout!r}")
    argv = tuple(argv)
    stderr = bytearray()
    eof = trio.Event()
    try:
        process = await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        outcome = NotifyOutcome(False, argv, detail=f"cannot run {argv[0]}: {exc.strerror or exc}")
        log.error("notification failed: %s", outcome.detail)
        return outcome

    timed_out = False
    try:
        async with trio.open_nursery() as nursery:
            assert process.stderr is not None
            nursery.start_soon(_collect, process.stderr, stderr, eof)
            with trio.move_on_after(timeout) as deadline:
                await process.wait()
                # A child it left behind may still hold stderr; that counts
                # against the same deadline.
                await eof.wait()
            timed_out = deadline.cancelled_caught
            nursery.cancel_scope.cancel()
    finally:
        if timed_out or process.returncode is None:
            _kill_group(process)
            with trio.CancelScope(shield=True):
                with trio.move_on_after(_REAP_BOUND):
                    await process.wait()

    if timed_out:
        outcome = NotifyOutcome(
            False,
            argv,
            returncode=None,
            timed_out=True,
            detail=f"{argv[0]} did not finish within {timeout:g} s and was killed",
        )
    elif process.returncode != 0:
        detail = f"{argv[0]} exited with status {process.returncode}"
        reason = _last_lines(bytes(stderr))
        if reason:
            detail += f": {reason}"
        outcome = NotifyOutcome(False, argv, returncode=process.returncode, detail=detail)
    else:
        outcome = NotifyOutcome(True, argv, returncode=0)
    if outcome.ok:
        log.info("notification sent: %s", " ".join(argv[1:]) if len(argv) > 1 else argv[0])
    else:
        log.error("notification failed: %s", outcome.detail)
    return outcome


async def notify(
    direction: Direction,
    addresses: Iterable[AddressLike],
    *,
    peer: str | IPv4Address | None = None,
    command: Command | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_NOTIFY_TIMEOUT,
) -> NotifyOutcome:
    """Mail the administrator that the peer is ``up`` (back) or ``down`` (failed).

    Runs ``<command> [--peer PEER] {up|down} ip_address ...``. ``env`` replaces
    the child's environment (``None``: inherit ours, which carries
    ``FAILOVER_EMAIL_RECIPIENT`` and ``FAILOVER_SMTP_*``). Never raises except
    ``trio.Cancelled``; see the module docstring.
    """
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
    argv = _base_argv(command)
    if peer is not None:
        argv += ["--peer", str(peer)]
    argv += [direction, *_address_args(addresses)]
    return await run_notify_command(argv, env=env, timeout=timeout)


async def alarm(
    message: str,
    addresses: Iterable[AddressLike] = (),
    *,
    level: AlarmLevel = "warning",
    command: Command | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_NOTIFY_TIMEOUT,
) -> NotifyOutcome:
    """Mail an alarm (a contested address, a quiet path, split-brain) by the same route.

    Runs ``<command> --alarm MESSAGE --level LEVEL [ip_address ...]``.
    Never raises except ``trio.Cancelled``.
    """
    argv = _base_argv(command) + ["--alarm", message, "--level", level, *_address_args(addresses)]
    return await run_notify_command(argv, env=env, timeout=timeout)


def _base_argv(command: Command | None) -> list[str]:
    return default_notify_command() if command is None else resolve_command(command)


class Notifier:
    """The daemon's configured notification route (command, environment, timeout), one mail at a time.

    ``start_soon`` is the fire-and-forget entry point for the core's
    :class:`~failoverd.core.actions.Notify` and
    :class:`~failoverd.core.actions.Alarm` actions: it queues the action and
    returns at once. One task of ``nursery`` (started when there is mail and
    ending when there is none) sends the queued mails in order, one at a
    time, each bounded by ``timeout``: a relay that accepts the connection
    and then stalls holds up that task only, and never more than one notify
    command runs. The order is kept, so "down" is mailed before the "up"
    that followed it.

    Bound: at most ``max_queued`` mails wait behind the one being sent;
    further ones are dropped, each logged as an error with the running
    count (:attr:`dropped`), and the next mail sent says in the log how
    many were dropped before it.

    Resource handling: the sending task lives in the nursery of the
    ``start_soon`` call that started it; cancelling that nursery kills the
    command in progress (see :func:`run_notify_command`) and leaves the
    queued mails unsent.
    """

    def __init__(
        self,
        command: Command | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_NOTIFY_TIMEOUT,
        max_queued: int = MAIL_QUEUE,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"notify timeout must be positive, not {timeout!r}")
        if max_queued < 0:
            raise ValueError(f"max_queued must not be negative, not {max_queued!r}")
        if command is not None:
            resolve_command(command)
        self.command = command
        self.env = env
        self.timeout = timeout
        self.max_queued = max_queued
        self.dropped = 0
        self._queued: deque[Notify | Alarm] = deque()
        self._sending = False
        self._in_progress = False
        self._unreported = 0

    async def notify(
        self, direction: Direction, addresses: Iterable[AddressLike], *, peer: str | None = None
    ) -> NotifyOutcome:
        return await notify(
            direction, addresses, peer=peer, command=self.command, env=self.env, timeout=self.timeout
        )

    async def alarm(
        self, message: str, addresses: Iterable[AddressLike] = (), *, level: AlarmLevel = "warning"
    ) -> NotifyOutcome:
        return await alarm(
            message, addresses, level=level, command=self.command, env=self.env, timeout=self.timeout
        )

    async def send(self, action: Notify | Alarm) -> NotifyOutcome:
        """Carry out one core action now (an Alarm is mailed whatever its ``mail`` flag)."""
        if isinstance(action, Notify):
            return await self.notify(action.direction, action.addresses, peer=action.peer or None)
        if isinstance(action, Alarm):
            return await self.alarm(action.message, level=action.level)
        raise TypeError(f"not a notification action: {action!r}")

    def start_soon(self, nursery: trio.Nursery, action: Notify | Alarm) -> None:
        """Queue ``action`` for the sending task (started in ``nursery`` if none runs); returns immediately."""
        if not isinstance(action, (Notify, Alarm)):
            raise TypeError(f"not a notification action: {action!r}")
        waiting = len(self._queued) - (0 if self._in_progress else 1)
        if waiting >= self.max_queued:
            self.dropped += 1
            self._unreported += 1
            log.error(
                "mail queue full (%d waiting behind the one being sent): not mailing %s (%d dropped so far)",
                waiting, _subject(action), self.dropped,
            )
            return
        self._queued.append(action)
        if not self._sending:
            self._sending = True
            nursery.start_soon(self._send_queued, name="notify")

    async def _send_queued(self) -> None:
        try:
            # Started in the same scheduling pass as the address change the
            # core asked for with it (a backup's release in the failback):
            # one checkpoint first, so that the change, which has none
            # before its netlink request, goes first and the command's
            # fork and exec never sit between the two (docs/benchmarks.md).
            await trio.lowlevel.checkpoint()
            while self._queued:
                action = self._queued.popleft()
                self._in_progress = True
                if self._unreported:
                    log.error("%d notifications were dropped while the mail queue was full", self._unreported)
                    self._unreported = 0
                await self.send(action)
                self._in_progress = False
        finally:
            self._sending = self._in_progress = False


def _subject(action: Notify | Alarm) -> str:
    if isinstance(action, Notify):
        return f"'{action.peer} is {action.direction}'"
    return f"alarm {action.message[:80]!r}"

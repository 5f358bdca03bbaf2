"""What both daemons do alike: signals, the control socket's answers, bounded stops.

Signals (handled inside Trio, so a handler never interrupts the core halfway):

- SIGTERM, SIGINT: orderly stop; a second one while stopping is only logged
  (the stop is already bounded).
- SIGHUP: reload what can be reloaded safely (each daemon says what).
- SIGUSR1: write the full state to the log.

The control socket's ``status`` answer is the core's snapshot plus what only
the runtime knows: wall-clock times, and the last few state changes
(:class:`RecentTransitions`), which the core does not keep.

Log lines wait while the loop works: :func:`run_daemon` runs Trio with
:class:`LinesWhenIdle`, so the daemon's own lines reach the log listener's
queue only when the loop is about to wait (see
:mod:`failoverd.cli.logsetup`): a failback's lines no longer wake a second
thread that takes the GIL between the backup's status and the master's add.

The metrics (:mod:`failoverd.runtime.metrics`) are imported only when
``--metrics-listen`` asks for them: ``prometheus_client`` is some 180
modules and 3 MiB of every daemon's memory, for a feature that is off by
default.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import trio

from failoverd import __version__
from failoverd.cli import logsetup
from failoverd.cli.config import ListenAddress
from failoverd.cli.exitcodes import EX_CONFIG, ProgramError
from failoverd.core.actions import StateChanged
from failoverd.runtime.ports import System
from failoverd.system.keyfile import KeyFileError, read_key

if TYPE_CHECKING:
    from failoverd.cli.config import WitnessSettings
    from failoverd.core.addresses import Triplet
    from failoverd.runtime.claims import WitnessClaims
    from failoverd.runtime.metrics import Meter, MetricsEndpoint, Role

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def watch_signals(
    *,
    stop: Callable[[], None],
    reload: Callable[[], None],
    dump: Callable[[], None],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum in STOP_SIGNALS:
                log.info("%s received: stopping", name)
                stop()
            elif signum == signal.SIGHUP:
                log.info("SIGHUP received: reloading")
                reload()
            elif signum == signal.SIGUSR1:
                dump()


def metrics_endpoint(listen: ListenAddress | None) -> AbstractContextManager[MetricsEndpoint | None]:
    """:func:`failoverd.runtime.metrics.bind`, importing the metrics only when ``listen`` is given."""
    if listen is None:
        return nullcontext(None)
    from failoverd.runtime import metrics

    return metrics.bind(listen)


def witness_claims(settings: WitnessSettings | None, addresses: Iterable[Triplet], program: str) -> WitnessClaims | None:
    """:func:`failoverd.runtime.claims.witness_claims`, or None without a witness; the etcd client
    (httpx, about 80 ms and 3 MiB of imports) is imported only when one is configured."""
    if settings is None:
        return None
    from failoverd.runtime import claims

    return claims.witness_claims(settings, addresses, program)


def metrics_meter(role: Role, core: Any, host: System) -> Meter:
    """A :class:`failoverd.runtime.metrics.Meter` (call only with an endpoint bound)."""
    from failoverd.runtime import metrics

    return metrics.Meter(role, core, host)


def stopper(stopping: trio.Event) -> Callable[[], None]:
    """The stop callback for :func:`watch_signals`: set ``stopping`` once, log repeats."""

    def stop() -> None:
        if stopping.is_set():
            log.warning("already stopping (bounded); ignoring the repeated signal")
        stopping.set()

    return stop


def status_line(snapshot: dict[str, Any]) -> str:
    """The state in words for systemd's ``STATUS=`` (``systemctl status`` shows it)."""
    held = ", ".join(snapshot.get("held", [])) or "nothing"
    witness = snapshot.get("witness")
    claim = "" if witness is None else (
        "; etcd " + ("claim held" if witness["claim"] else "no claim")
        + ("" if witness["reachable"] else ", UNREACHABLE"))
    if snapshot["role"] == "backup":
        return f"{snapshot['state']}: watching master {snapshot['master']}; holding {held}{claim}"
    return f"{snapshot['state']}: heartbeats to {' '.join(snapshot['targets'])}; holding {held}{claim}"


def systemd_status(service: Any, snapshot: Callable[[], dict[str, Any]]) -> Callable[[float, Any], None] | None:
    """The shell follower that tells systemd (``service``, a ServiceManager) the state in words on every change.

    None when no service manager listens (no ``$NOTIFY_SOCKET``): the
    follower would build the core's snapshot at every state change, the
    failback's "waiting -> acquiring" included, to send it nowhere.
    """
    if not service.enabled:
        return None

    def follow(now: float, action: Any) -> None:
        if isinstance(action, StateChanged):
            service.status(status_line(snapshot()))

    return follow


def following(*followers: Callable[[float, Any], None] | None) -> Callable[[float, Any], None] | None:
    """One ``on_action`` callback for the shell that calls each follower given."""
    present = [f for f in followers if f is not None]
    if not present:
        return None

    def follow(now: float, action: Any) -> None:
        for follower in present:
            follower(now, action)

    return follow


TRANSITIONS_KEPT = 10
"""State changes the status answer carries, newest last (``failoverctl watch`` shows them)."""


class RecentTransitions:
    """The last :data:`TRANSITIONS_KEPT` state changes, each with the wall-clock time it happened.

    Pass :meth:`follow` to the shell's ``on_action`` (through :func:`following`):
    it sees each ``StateChanged`` as the executor dispatches it, right after
    the core decided, so ``time.time()`` then is the moment of the change.
    Bounded: older changes are forgotten (the log and the trace keep them all).
    """

    def __init__(self, keep: int = TRANSITIONS_KEPT) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)

    def follow(self, now: float, action: Any) -> None:
        if isinstance(action, StateChanged):
            self._recent.append({
                "at": round(time.time(), 3), "source": action.source, "dest": action.dest, "trigger": action.trigger,
            })

    def recent(self) -> list[dict[str, Any]]:
        """Oldest first, as copies (the answer is serialised after the handler returns)."""
        return [dict(change) for change in self._recent]


def log_state(state: dict[str, Any]) -> None:
    log.info("state dump: %s", json.dumps(state, sort_keys=True, default=str))


def status_reply(
    snapshot: dict[str, Any], *, master: str | None, timing: dict[str, Any], transitions: RecentTransitions,
) -> dict[str, Any]:
    """The core's snapshot in the control socket's ``Status`` shape."""
    reply = {
        "role": snapshot["role"],
        "state": snapshot["state"],
        # The core counts seconds in the state; failoverctl wants the moment.
        "since": round(time.time() - snapshot["since"], 3),
        "master": master,
        "paths": [
            {"name": p["name"], "last_heard_age": p["last_heard_age"], "healthy": p["healthy"]}
            for p in snapshot.get("paths", [])
        ],
        "held": list(snapshot.get("held", [])),
        "counters": snapshot.get("counters", {}),
        "timing": timing,
        "transitions": transitions.recent(),
        "version": __version__,
    }
    if snapshot.get("witness") is not None:
        reply["witness"] = dict(snapshot["witness"])
    # Several backups (spec/backups.md), as failoverctl shows them: a backup's priority, rank and
    # peers (a mapping), a master's view of each backup (a list) and how many it expects.
    for key in ("backups", "backups_expected"):
        if snapshot.get(key) is not None:
            reply[key] = snapshot[key]
    return reply


def load_key(config: Any) -> bytes | None:
    """The key of ``config.key_file`` at start (None without one); an unusable file is a :class:`ProgramError` (78)."""
    if config.key_file is None:
        return None
    try:
        return read_key(config.key_file)
    except KeyFileError as error:
        raise ProgramError(EX_CONFIG, str(error)) from None


def reload_key(path, current: bytes | None, rekey: Callable[[bytes], None]) -> bytes | None:
    """SIGHUP and the key file: switch the core to the key on disk if it changed.

    Returns the key now in use. Rotating a key means changing the file on both
    hosts and sending SIGHUP to both; between the two, each side refuses the
    other's frames (counted as ``mac``), which the backup rides out like lost
    heartbeats, and its ARP probe keeps it from taking a live master's
    addresses if the two signals are further apart than its failure timeout.
    Turning authentication on or off needs a restart.
    """
    if path is None:
        return current
    try:
        key = read_key(path)
    except KeyFileError as error:
        log.error("SIGHUP: %s; still using the key read before", error)
        return current
    if key == current:
        log.info("SIGHUP: key file %s unchanged", path)
        return current
    rekey(key)
    log.warning("SIGHUP: key file %s changed: using the new key from now on (rotate it on the peer too)", path)
    return key


def stop_bound(hook_timeout: float) -> float:
    """How long an orderly stop may take: an address change in progress and the final release,
    each running at most a Test, a Pre and a Post hook to their timeout, plus slack for netlink."""
    return 2 * (3 * hook_timeout + 5.0)


class LinesWhenIdle(trio.abc.Instrument):
    """Holds the Trio thread's log lines back while the loop has work, and queues them before it waits.

    ``before_io_wait`` with a timeout of 0 means more tasks are ready to
    run (a failback's add right after the status that allowed it); a
    positive one, that the loop is about to sleep until a frame, a deadline
    or a thread's result: the lines go to the listener then. It runs before
    every wait of the loop, so what it does when nothing is held is one
    length test.
    """

    def before_run(self) -> None:
        logsetup.hold_lines()

    def before_io_wait(self, timeout: float) -> None:
        if timeout > 0:
            logsetup.release_lines()

    def after_run(self) -> None:
        logsetup.stop_holding_lines()


def run_daemon(serve: Callable[..., Any], config: Any) -> int:
    """Run a daemon's ``serve(config)`` under Trio; a :class:`ProgramError` becomes its exit status.

    One raised by a task (the control socket's, when its path cannot be
    served) reaches here wrapped in the nurseries' exception groups; it is
    unwrapped, so that its status (78, say, which systemd does not restart on)
    is the exit status rather than 70 with a traceback.
    """
    # Everything imported and built so far lives as long as the daemon: out
    # of the collector's sight, a full collection no longer walks it (tens
    # of milliseconds of a 30 MiB heap, which could land in a failback).
    # Start-up garbage in cycles that is frozen too stays: a one-time, bounded cost.
    gc.freeze()
    try:
        return trio.run(serve, config, instruments=[LinesWhenIdle()])
    except ProgramError as error:
        log.error("%s", error)
        return error.status
    except BaseExceptionGroup as group:
        only = _only_program_error(group)
        if only is None:
            raise
        log.error("%s", only)
        return only.status


def _only_program_error(group: BaseExceptionGroup) -> ProgramError | None:
    """The first ProgramError in ``group`` if that holds nothing else (one failure ends a daemon)."""
    programs, rest = group.split(ProgramError)
    if programs is None or rest is not None:
        return None
    first: BaseException = programs
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, ProgramError)
    return first

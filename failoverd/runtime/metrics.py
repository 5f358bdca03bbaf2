"""Prometheus metrics (``--metrics-listen``): what a daemon knows, served from its Trio thread.

Off unless ``--metrics-listen`` is given. docs/metrics.md lists every metric
with its type, labels and meaning; keep the two in step.

Theory of operation
-------------------
Idle cost comes first (a daemon that only watches heartbeats must stay
cheap), so almost nothing is counted for the metrics' sake:

- At scrape time a :class:`Collector` reads what the core, the shell and the
  heartbeat socket already keep: the state, the per-path health and counts,
  the rejected datagrams by reason, what was sent to each target. A
  heartbeat costs the metrics nothing the core did not already do.
- At events, which are rare, :class:`Meter` follows the shell (as an
  ``on_action``/``on_result`` follower, like the conflict feed and systemd's
  status): each state change is counted by its transition (takeovers,
  releases and contests are sums of transitions), and histograms are
  observed: detection latency when the backup decides to take over, each
  probe's, acquire's and release's duration from the action to its result,
  each hook phase's duration, and the failback gap of a managing master. Its
  only work per heartbeat is one dictionary look-up of the action's type.

The scrape is answered by a Trio task (:class:`MetricsEndpoint`), not by
``prometheus_client``'s HTTP thread: a thread reading the core while the Trio
thread changes it could see a state and counters that never existed
together. Here rendering runs in the Trio thread between two inputs, so every
scrape is one consistent moment of the daemon.

The HTTP side is deliberately small and strict: ``GET`` (or ``HEAD``) of
``/metrics`` over HTTP/1.0 or 1.1 gets 200 with ``CONTENT_TYPE_LATEST``;
another path 404, another method 405, anything malformed 400, a request head
over :data:`MAX_HEAD_BYTES` 431, another HTTP version 505. One request per
connection, closed after the reply. A client has :data:`READ_TIMEOUT`
seconds to send its request head and :data:`WRITE_TIMEOUT` to take the reply,
and at most :data:`MAX_CONNECTIONS` connections are open at once: a new one
closes the oldest. So an idle or slow client (slowloris) never holds the
daemon or a file descriptor for long, and a flood of connections cannot keep
a real scrape, which sends its request at once, from being answered.

Resource handling: :func:`bind` owns the listening socket (a context
manager; it is closed on the way out); :meth:`MetricsEndpoint.serve` owns
every connection, each closed when its reply is sent, its time is up, or it
is the oldest when too many are open.

Error handling: an address that cannot be listened on raises
:class:`~failoverd.cli.exitcodes.ProgramError` (exit 78, before the daemon
starts). Nothing a client sends can end the server; a collector that fails is
logged and answered 500, and the daemon goes on.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from failoverd import __version__
from failoverd.cli.config import ListenAddress
from failoverd.cli.exitcodes import EX_CONFIG, ProgramError
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Action,
    Probe,
    ProbeDone,
    Release,
    ReleaseDone,
    Result,
    StateChanged,
)
from failoverd.runtime.ports import System
from failoverd.system.hooks import TEST, Phase

log = logging.getLogger(__name__)

# The hook phases, from their type: each gets its series at zero before its first run.
_PHASES: tuple[Phase, ...] = get_args(Phase)

Role = Literal["backup", "master"]

MAX_CONNECTIONS = 8
"""Connections open at once; one more closes the oldest."""
MAX_HEAD_BYTES = 8192
"""The request line and headers, blank line included."""
READ_TIMEOUT = 2.0
"""Seconds a client has to send its request head."""
WRITE_TIMEOUT = 5.0
"""Seconds a client has to take the reply."""
LINGER_TIMEOUT = 1.0
"""Seconds, after the reply, for the client to close before we do."""
_LINGER_BYTES = 65536  # read (and dropped) after the reply, so closing does not reset it away
_BACKLOG = 64

DETECTION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0)
"""Seconds from the last heartbeat to the takeover; the default timing's is 3 s."""
ACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Seconds an ARP probe, an acquire, a release or a hook phase takes (hooks may run up to --hook-timeout)."""
GAP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REJECT_REASONS: dict[tuple[Role, str], tuple[str, ...]] = {
    # Shown at 0 from the start, so rate() and alerts work before the first one.
    ("backup", "authenticated"): ("length", "magic", "mac", "version", "role", "flags", "seq", "replay", "epoch", "delayed", "priority"),
    ("master", "authenticated"): ("length", "magic", "mac", "version", "role", "flags", "seq", "replay", "epoch", "delayed"),
    ("backup", "legacy"): ("message", "source"),
    ("master", "legacy"): ("unexpected",),
}

HOOK_RESULTS = ("ok", "failed", "timeout", "error")
TEST_RESULTS = ("ok", "refused")


@dataclass(frozen=True)
class RoleEvents:
    """Which state transitions of a role's core are a takeover, a release, a contest."""

    become: frozenset[tuple[str, str]]
    """Deciding to take the addresses (keepalived's "became master")."""
    release_into: str
    """The state entered when beginning to let the addresses go."""
    contest: frozenset[tuple[str, str]]
    """Finding the addresses still answered for on the wire, and so not taking them."""


ROLE_EVENTS: dict[Role, RoleEvents] = {
    "backup": RoleEvents(
        become=frozenset({("suspect", "acquiring"), ("contested", "acquiring"), ("announcing", "acquiring")}),
        release_into="recovering",
        contest=frozenset({("suspect", "contested")}),
    ),
    "master": RoleEvents(
        become=frozenset({("waiting", "acquiring"), ("probing", "acquiring")}),
        release_into="releasing",
        contest=frozenset({("probing", "waiting")}),
    ),
}

_TIMED: dict[type, str] = {Probe: "probe", Acquire: "acquire", Release: "release"}
_RESULTS: dict[type, str] = {ProbeDone: "probe", AcquireDone: "acquire", ReleaseDone: "release"}


# --- events: the shell's followers --------------------------------------------------------------


class Meter:
    """The metrics a daemon keeps at events; :meth:`collector` adds those read at scrape time.

    ``core`` is the daemon's :class:`~failoverd.core.detector.Detector` (role
    ``backup``) or :class:`~failoverd.core.master.Master` (role ``master``).
    ``system``: the executor's system port; it reports each hook phase's
    result and duration (:meth:`~failoverd.runtime.ports.System.observe_hooks`).
    Pass :meth:`follow` and :meth:`result` to the shell.
    """

    def __init__(self, role: Role, core: Any, system: System | None = None) -> None:
        self.role = role
        self.core = core
        self.mode: str = core.snapshot(trio.current_time())["mode"]
        self.events = ROLE_EVENTS[role]
        self.registry = CollectorRegistry(auto_describe=False)
        self.transitions: dict[tuple[str, str], int] = {pair: 0 for pair in _declared_transitions(core)}
        self.probes = {"silent": 0, "answered": 0}
        self.address_changes = {(a, r): 0 for a in ("acquire", "release") for r in ("done", "failed", "refused")}
        self.hooks = {(TEST, r): 0 for r in TEST_RESULTS} | {(p, r): 0 for p in _PHASES for r in HOOK_RESULTS}
        # Dispatch times of the actions whose results are pending, oldest first:
        # the executor reports each kind's results in the order it was asked.
        # Bounded: an action cancelled at stop never reports.
        self._started: dict[str, deque[float]] = {kind: deque(maxlen=64) for kind in _RESULTS.values()}
        self._failback_from: float | None = None
        self._declined = False  # the backup is unfit, or suspects again since: its takeover is no detection
        self.durations = Histogram(
            "failoverd_action_duration_seconds", "Seconds from the core asking for an action to its result.",
            ["action"], buckets=ACTION_BUCKETS, registry=self.registry,
        )
        for kind in _RESULTS.values():
            self.durations.labels(kind)
        self.hook_durations = Histogram(
            "failoverd_hook_duration_seconds", "Seconds one address's hooks of one phase took, together.",
            ["phase"], buckets=ACTION_BUCKETS, registry=self.registry,
        )
        for phase in (TEST, *_PHASES):
            self.hook_durations.labels(phase)
        self.detection: Histogram | None = None
        self.failback_gap: Histogram | None = None
        if role == "backup":
            self.detection = Histogram(
                "failoverd_detection_latency_seconds", "Seconds from the master's last heartbeat to the takeover decision.",
                buckets=DETECTION_BUCKETS, registry=self.registry,
            )
        else:
            self.failback_gap = Histogram(
                "failoverd_failback_gap_seconds",
                "Seconds from the backup saying it holds nothing to this master holding its addresses.",
                buckets=GAP_BUCKETS, registry=self.registry,
            )
        if system is not None:
            system.observe_hooks(self.hook_ran)

    # Called for every action (each heartbeat sent is one): keep it to a look-up.
    def follow(self, now: float, action: Action) -> None:
        kind = _TIMED.get(type(action))
        if kind is not None:
            self._started[kind].append(now)
        elif type(action) is StateChanged:
            self._state_changed(now, action)

    def result(self, now: float, result: Result) -> None:
        kind = _RESULTS.get(type(result))
        if kind is None:
            return
        started = self._started[kind]
        if started:
            self.durations.labels(kind).observe(now - started.popleft())
        if isinstance(result, ProbeDone):
            self.probes["answered" if result.answered else "silent"] += 1
            return
        if not isinstance(result, (AcquireDone, ReleaseDone)):
            return
        done = result.acquired if isinstance(result, AcquireDone) else result.released
        for outcome, addresses in (("done", done), ("failed", result.failed), ("refused", result.refused)):
            self.address_changes[(kind, outcome)] += len(addresses)

    def hook_ran(self, phase: str, results: Iterable[str], seconds: float) -> None:
        """One address's ``phase`` hooks ran, with these results (a :data:`~failoverd.runtime.ports.HookObserver`)."""
        for outcome in results:
            self.hooks[(phase, outcome)] = self.hooks.get((phase, outcome), 0) + 1
        self.hook_durations.labels(phase).observe(seconds)

    def _state_changed(self, now: float, change: StateChanged) -> None:
        pair = (change.source, change.dest)
        self.transitions[pair] = self.transitions.get(pair, 0) + 1
        if self.detection is not None and change.dest in ("unfit", "monitoring"):
            self._declined = change.dest == "unfit"
        if self.detection is not None and pair in self.events.become:
            # The core has just decided: its last_heard is the heartbeat the
            # detection counts from (a "leaving" heartbeat does not move it).
            # A takeover that waited for our own health checks to pass again
            # measures them, not detection: it is not observed.
            if not self._declined:
                self.detection.observe(max(0.0, now - self.core.last_heard))
            self._declined = False
        elif self.failback_gap is not None:
            if pair in self.events.become and change.trigger == "backup_released":
                self._failback_from = now
            elif change.source == "acquiring":
                if change.dest == "holding" and self._failback_from is not None:
                    self.failback_gap.observe(now - self._failback_from)
                self._failback_from = None

    def count(self, pairs: Iterable[tuple[str, str]]) -> int:
        return sum(self.transitions.get(pair, 0) for pair in pairs)

    # --- scrape time ------------------------------------------------------------------------

    def collector(self, shell: Any, sock: Any) -> Callable[[], bytes]:
        """Register the scrape-time metrics of ``shell`` (its core) and ``sock``; return the renderer."""
        self.registry.register(_DaemonCollector(self, shell, sock))

        def render() -> bytes:
            # The frame thread changes the core's counters and the socket's: read them between its inputs.
            with shell.lock:
                return generate_latest(self.registry)

        return render


def _declared_transitions(core: Any) -> list[tuple[str, str]]:
    pairs = []
    for t in type(core).TRANSITIONS:
        if t["dest"] is None:
            continue
        sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
        pairs += [(source, t["dest"]) for source in sources]
    return list(dict.fromkeys(pairs))


class _DaemonCollector(Collector):
    """Reads the core, the shell and the heartbeat socket at scrape time (in the Trio thread)."""

    def __init__(self, meter: Meter, shell: Any, sock: Any) -> None:
        self.meter = meter
        self.shell = shell
        self.sock = sock

    def collect(self) -> Iterator[Metric]:
        meter, core = self.meter, self.meter.core
        role, mode = meter.role, meter.mode
        now = trio.current_time()

        info = GaugeMetricFamily("failoverd_info", "The daemon: its role, version and heartbeat mode.",
                                 labels=["role", "version", "mode"])
        info.add_metric([role, __version__, mode], 1)
        yield info
        state = GaugeMetricFamily("failoverd_state", "1 for the state the core is in, 0 for the others.",
                                  labels=["role", "state"])
        for name in type(core).STATES:
            state.add_metric([role, name], 1 if name == core.state else 0)
        yield state
        yield GaugeMetricFamily("failoverd_state_age_seconds", "Seconds since the core entered its state.",
                                value=now - core.state_since)
        yield GaugeMetricFamily("failoverd_addresses_held", "Addresses this host holds now.", value=len(core.held))
        yield GaugeMetricFamily("failoverd_health_checks_passing",
                                "1 while this host's --check commands pass (or it has none), 0 while one fails.",
                                value=1 if core.healthy else 0)

        peer_heard = core.last_heard if role == "backup" else core.backup_last_heard
        age = GaugeMetricFamily(
            "failoverd_peer_last_heard_age_seconds",
            "Seconds since the peer's last valid frame (backup: since start if never; master: absent until heard).",
        )
        if peer_heard is not None:
            age.add_metric([], now - peer_heard)
        yield age

        received = CounterMetricFamily("failoverd_advertisements_received",
                                       "Authentic, unseen frames of the peer, by the interface they arrived on.",
                                       labels=["path"])
        if role == "backup":
            paths = sorted(core.paths.values(), key=lambda p: p.name)
            for p in paths:
                received.add_metric([p.name], p.received)
            yield received
            path_age = GaugeMetricFamily("failoverd_path_last_heard_age_seconds",
                                         "Seconds since the master was last heard on this path.", labels=["path"])
            healthy = GaugeMetricFamily("failoverd_path_healthy",
                                        "0 while this path is quiet and another still delivers, else 1.",
                                        labels=["path"])
            for p in paths:
                path_age.add_metric([p.name], now - p.last_heard)
                healthy.add_metric([p.name], 0 if p.quiet else 1)
            yield path_age
            yield healthy
        else:
            for path, count in sorted(core.received_by_path.items()):
                received.add_metric([path], count)
            yield received
            yield GaugeMetricFamily("failoverd_peer_silent",
                                    "1 while the backup, once heard, has been silent past its failure timeout.",
                                    value=1 if core.backup_silent else 0)
            yield from _backups([v.snapshot(now, core.backup_fail_after) for v in core.views.values()])

        yield _by_label("failoverd_advertisements_sent", "Frames handed to the kernel for the peer, by target.",
                        "target", self.sock.sent_to)
        yield _by_label("failoverd_advertisements_send_failures",
                        "Frames for the peer that could not be sent (no route, queue full), by target.",
                        "target", self.sock.dropped_to)
        rejected = dict.fromkeys(REJECT_REASONS[(role, mode)], 0) | core.counters.rejected
        yield _by_label("failoverd_datagrams_rejected", "Datagrams not acted upon, by reason.", "reason", rejected)
        yield _counter("failoverd_advertisements_unacknowledged",
                       "Authentic frames made before the peer knew our current epoch (answered, not counted).",
                       core.counters.unacknowledged)
        yield _counter("failoverd_undeclared_inputs",
                       "Inputs in a state where no row of the core's table holds (a bug: ignored, and alarmed).",
                       core.counters.undeclared)
        if role == "backup":
            yield _counter("failoverd_advertisements_overtaken",
                           "Authentic frames older than the newest accepted (path health only).",
                           core.counters.overtaken)
            yield _counter("failoverd_false_suspicions", "Times the master was suspect and then heard again.",
                           core.counters.false_suspicions)
            backups = core.snapshot(now).get("backups")
            if backups is not None:
                # Only with --peer (several backups, spec/backups.md).
                yield _counter("failoverd_deferrals", "Failure deadlines at which a peer backup held or outranked us.",
                               core.counters.deferrals)
                yield _counter("failoverd_announcements",
                               "Failure deadlines at which we announced to the peer backups before acquiring.",
                               core.counters.announcements)
                yield _counter("failoverd_withdrawals",
                               "Announcements withdrawn (a higher peer holds, the master is back, or we turned unfit).",
                               core.counters.withdrawals)
                awaiting = GaugeMetricFamily("failoverd_announce_awaiting",
                                             "Announcing: peer backups whose answer we still wait for.")
                awaiting.add_metric([], len(backups.get("awaiting") or []))
                yield awaiting
                unheard = GaugeMetricFamily(
                    "failoverd_master_unheard",
                    "1 while a peer backup's \"master heard\" keeps us from taking over (its heartbeats do not reach us).")
                unheard.add_metric([], 1 if backups.get("master_unheard") else 0)
                yield unheard
                peers = GaugeMetricFamily("failoverd_peer_alive",
                                          "1 while a frame of the peer backup counted within the failure timeout.",
                                          labels=["priority"])
                for peer in backups["peers"]:
                    if peer["priority"] is not None:
                        peers.add_metric([str(peer["priority"])], 1 if peer["alive"] else 0)
                yield peers

        events = meter.events
        yield _counter("failoverd_become_master", "Times this host decided to take the addresses.",
                       meter.count(events.become))
        yield _counter("failoverd_release_master", "Times this host began releasing the addresses.",
                       sum(n for (_, dest), n in meter.transitions.items() if dest == events.release_into))
        yield _counter("failoverd_contested", "Times the addresses still answered on the wire, so were not taken.",
                       meter.count(events.contest))
        transitions = CounterMetricFamily("failoverd_state_transitions", "State changes of the core.",
                                          labels=["from", "to"])
        for (source, dest), count in sorted(meter.transitions.items()):
            transitions.add_metric([source, dest], count)
        yield transitions
        yield _counter("failoverd_conflicts", "ARP packets of another host claiming an address we claim.",
                       self.shell.conflicts_seen)
        yield _by_label("failoverd_probes", "ARP probes finished, by whether any address was answered for.",
                        "result", meter.probes)
        changes = CounterMetricFamily("failoverd_address_changes",
                                      "Addresses acquired or released, by outcome (refused: by the Test hook).",
                                      labels=["action", "result"])
        for (action, outcome), count in sorted(meter.address_changes.items()):
            changes.add_metric([action, outcome], count)
        yield changes
        hooks = CounterMetricFamily("failoverd_hooks", "Hooks run, by phase and result.", labels=["phase", "result"])
        for (phase, outcome), count in sorted(meter.hooks.items()):
            hooks.add_metric([phase, outcome], count)
        yield hooks
        claims = self.shell.executor.claims
        witness = core.snapshot(now).get("witness")
        if claims is not None and witness is not None:
            # Only in witness mode (--etcd-endpoints): spec/witness.md.
            yield GaugeMetricFamily("failoverd_witness_reachable",
                                    "1 while the etcd witness answered the last claim or renewal, else 0.",
                                    value=1 if witness["reachable"] else 0)
            yield GaugeMetricFamily("failoverd_witness_claim_held",
                                    "1 while this host holds the address set's etcd claim.",
                                    value=1 if witness["claim"] else 0)
            left = GaugeMetricFamily("failoverd_witness_proof_left_seconds",
                                     "Seconds the newest proof of the claim still lets this host hold the addresses.")
            if witness["proof_left"] is not None:
                left.add_metric([], witness["proof_left"])
            yield left
            confirmed = GaugeMetricFamily(
                "failoverd_witness_confirmation_left_seconds",
                "--etcd-unreachable keep: seconds the confirmations of every other host that it cannot reach "
                "etcd either still keep the addresses held (absent: none runs).")
            if witness.get("confirmation_left") is not None:
                confirmed.add_metric([], witness["confirmation_left"])
            yield confirmed
            requests = CounterMetricFamily("failoverd_witness_requests",
                                           "Claims, renewals, give-backs and reach questions (does etcd answer us?) sent to etcd, by outcome.",
                                           labels=["operation", "result"])
            for (operation, outcome), count in sorted(claims.requests.items()):
                requests.add_metric([operation, outcome], count)
            yield requests


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _backups(backups: list[dict[str, object]]) -> Iterator[Metric]:
    """heartbeatd's view of each backup heard, by its priority (0: the backup of a pair)."""
    families = {
        "alive": GaugeMetricFamily("failoverd_backup_alive", "1 while the backup of this priority was heard "
                                   "within its failure timeout.", labels=["priority"]),
        "holds": GaugeMetricFamily("failoverd_backup_holds", "1 while the backup of this priority last said it "
                                   "holds (or is adding or removing) the addresses.", labels=["priority"]),
        "released": GaugeMetricFamily("failoverd_backup_released", "1 while the backup's \"I hold nothing\" "
                                      "counts for the managed failback.", labels=["priority"]),
    }
    for backup in backups:
        for key, family in families.items():
            family.add_metric([str(backup["priority"])], 1 if backup[key] else 0)
    yield from families.values()


def _by_label(name: str, documentation: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


# --- the HTTP endpoint --------------------------------------------------------------------------


def bind(listen: ListenAddress | None) -> AbstractContextManager[MetricsEndpoint | None]:
    """Listen at ``listen`` for scrapes (a context manager; ``None``: metrics off, nothing bound).

    Error handling: raises :class:`ProgramError` (78) naming the address if it cannot be listened on.
    """
    if listen is None:
        return nullcontext(None)
    family = socket.AF_INET6 if isinstance(listen.address, IPv6Address) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A restarted daemon must not wait out the last scrape's TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        where = socket.getaddrinfo(str(listen.address), listen.port, family, socket.SOCK_STREAM, 0,
                                   socket.AI_NUMERICHOST)[0][4]
        sock.bind(where)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise ProgramError(EX_CONFIG, f"cannot listen for metrics on {listen}: {_why(error)}") from None
    if listen.loopback:
        log.info("serving metrics at http://%s/metrics", listen)
    else:
        log.warning(
            "serving metrics at http://%s/metrics, which is not a loopback address: whoever can reach it "
            "reads this daemon's state (prefer 127.0.0.1 or ::1 and a local scraper)", listen,
        )
    return MetricsEndpoint(sock, listen)


def _why(error: OSError) -> str:
    text = error.strerror or str(error)
    if error.errno == errno.EADDRINUSE:
        return f"{text} (another program listens there)"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{text} (no interface of this host has that address)"
    return text


class _HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


_REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 505: "HTTP Version Not Supported",
}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class MetricsEndpoint:
    """The listening socket for scrapes and the task that answers them (see the module's docstring)."""

    def __init__(self, sock: socket.socket, listen: ListenAddress) -> None:
        self.listen = listen
        self.port: int = sock.getsockname()[1]
        self._listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        self._sock = sock
        self._open: dict[trio.CancelScope, None] = {}  # oldest first
        self.dropped = 0
        """Connections closed because newer ones came while :data:`MAX_CONNECTIONS` were open."""

    async def serve(self, render: Callable[[], bytes], *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer scrapes with ``render()`` (the exposition text) until cancelled."""

        async def connection(stream: trio.SocketStream) -> None:
            await self._connection(stream, render)

        await trio.serve_listeners(connection, [self._listener], task_status=task_status)

    async def _connection(self, stream: trio.SocketStream, render: Callable[[], bytes]) -> None:
        scope = trio.CancelScope()
        self._open[scope] = None
        while len(self._open) > MAX_CONNECTIONS:
            oldest = next(iter(self._open))
            del self._open[oldest]
            oldest.cancel()
            self.dropped += 1
            log.debug("metrics: more than %d connections; closed the oldest", MAX_CONNECTIONS)
        # Whatever one client does (reset, vanish, stall), it ends here: an
        # exception escaping this task would take the whole server down.
        try:
            with scope:
                async with stream:
                    await self._exchange(stream, render)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            log.debug("metrics client went away: %s", error)
        finally:
            self._open.pop(scope, None)

    async def _exchange(self, stream: trio.SocketStream, render: Callable[[], bytes]) -> None:
        head_only = False
        with trio.move_on_after(READ_TIMEOUT) as reading:
            try:
                head = await _read_head(stream)
                if head is None:
                    return  # closed before a complete request: nobody to answer
                head_only = head.startswith(b"HEAD ")  # no body in any answer to HEAD
                _parse_head(head)
                reply = _reply(200, _render(render), CONTENT_TYPE_LATEST, head_only=head_only)
            except _HttpError as error:
                extra = ("Allow: GET, HEAD",) if error.status == 405 else ()
                reply = _reply(error.status, f"{error}\n".encode(), head_only=head_only, extra=extra)
        if reading.cancelled_caught:
            reply = _reply(408, f"no complete request within {READ_TIMEOUT:g} s\n".encode())
        with trio.move_on_after(WRITE_TIMEOUT):
            await stream.send_all(reply)
            await stream.send_eof()
        # Closing with unread input (a body, a second request, a slow client's
        # next bytes) would reset the connection and could destroy the reply
        # before the client read it: read what it sends, briefly, first.
        with trio.move_on_after(LINGER_TIMEOUT):
            left = _LINGER_BYTES
            while left > 0:
                chunk = await stream.receive_some(min(left, 4096))
                if not chunk:
                    break
                left -= len(chunk)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> MetricsEndpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """The request line and headers without the blank line; ``None`` if the client closed first."""
    buffer = bytearray()
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            return bytes(buffer[:end])
        if len(buffer) >= MAX_HEAD_BYTES:
            raise _HttpError(431, f"request line and headers are longer than {MAX_HEAD_BYTES} bytes")
        chunk = await stream.receive_some(MAX_HEAD_BYTES - len(buffer))
        if not chunk:
            return None
        buffer += chunk


def _parse_head(head: bytes) -> str:
    """The request's method, if it asks for ``/metrics``; otherwise the :class:`_HttpError` to answer."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise _HttpError(400, "the request is not ASCII") from None
    request_line, *header_lines = text.split("\r\n")
    if _CONTROL.search(text.replace("\r\n", "")):
        raise _HttpError(400, "control characters in the request")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise _HttpError(400, "malformed request line (expected: GET /metrics HTTP/1.1)")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        if version.startswith("HTTP/"):
            raise _HttpError(505, f"{version} is not served here (HTTP/1.0 or HTTP/1.1)")
        raise _HttpError(400, "malformed request line (expected: GET /metrics HTTP/1.1)")
    names = set()
    for line in header_lines:
        name, colon, _value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise _HttpError(400, f"malformed header line {line[:80]!r}")
        names.add(name.lower())
    if version == "HTTP/1.1" and "host" not in names:
        raise _HttpError(400, "an HTTP/1.1 request needs a Host header")
    if not _TOKEN.fullmatch(method):
        raise _HttpError(400, "malformed method")
    if urlsplit(target).path != "/metrics":
        raise _HttpError(404, "only /metrics is served here")
    if method not in ("GET", "HEAD"):
        raise _HttpError(405, f"{method} is not allowed on /metrics (GET or HEAD)")
    return method


def _render(render: Callable[[], bytes]) -> bytes:
    try:
        return render()
    except Exception:
        log.exception("metrics: collecting failed")
        raise _HttpError(500, "collecting the metrics failed; see the daemon's log") from None


def _reply(
    status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", *,
    head_only: bool = False, extra: tuple[str, ...] = (),
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (b"" if head_only else body)

"""Native heartbeat traces: every input of the backup's detector, one line each.

A trace holds what the detector was built with (its header) and then, in
order, every call the shell made into it: a datagram arrived, a timer fired,
an action finished, another host's ARP claimed an address, the health checks'
verdict changed, a link went down or up, the daemon stopped. Feeding those to a fresh :class:`~failoverd.core.detector.Detector`
re-executes the daemon exactly (see :mod:`failoverd.analysis.replay`). The format is
described in spec/trace.md; this module is its model, its line formatting and
its only reader. The threaded writer that puts the lines on the disk is
:mod:`failoverd.analysis.tracewriter`.

Rules of this module
--------------------
- The reader is strict: every field has one spelling (times are Python's
  shortest round-tripping float, hex is lower case), so an accepted line
  re-serialises to exactly itself. Anything else is a :class:`TraceError`
  naming the line, or a skipped line when the caller asks for that.
- The key is never in the model: a trace may be mailed to a colleague.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from failoverd.core.actions import AcquireDone, ClaimDone, ProbeDone, ReachDone, ReleaseDone, RenewDone, Result
from failoverd.core.addresses import AddressError, Triplet, parse_ip, parse_triplet
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing, TimingError
from failoverd.core.witness import WitnessTiming, WitnessTimingError

if TYPE_CHECKING:
    from failoverd.cli.config import BackupConfig

FORMAT_NAME = "failoverd-trace"
FORMAT_VERSION = 1
MAGIC = f"{FORMAT_NAME} {FORMAT_VERSION}\n"
MAGIC_PREFIX = FORMAT_NAME.encode("ascii") + b" "

Mode = Literal["legacy", "authenticated"]

# Result kinds and, for each, the address-set fields in their canonical order.
_RESULT_FIELDS: dict[str, tuple[str, ...]] = {
    "probe": ("answered",),
    "acquire": ("acquired", "failed", "refused"),
    "release": ("released", "failed", "refused"),
}
_RESULT_TYPES: dict[str, type] = {"probe": ProbeDone, "acquire": AcquireDone, "release": ReleaseDone}
_RESULT_KIND = {ProbeDone: "probe", AcquireDone: "acquire", ReleaseDone: "release"}
_TIMING_FIELDS = tuple(f.name for f in dataclasses.fields(Timing))
_WITNESS_FIELDS = tuple(f.name for f in dataclasses.fields(WitnessTiming))
# The etcd witness's answers (spec/trace.md): an outcome, the times they carry, a detail.
_CLAIM_OUTCOMES = ("granted", "refused", "unreachable")
_RENEW_OUTCOMES = ("proved", "lost", "unreachable")
_REACH_OUTCOMES = ("answered", "unreachable")
_TAIL_CACHE_SIZE = 4096


class TraceError(ValueError):
    """A trace that cannot be read; ``line`` is 1-based (0: the file as a whole)."""

    def __init__(self, name: str, line: int, message: str) -> None:
        self.name = name
        self.line = line
        self.message = message
        where = f"{name}:{line}" if line else name
        super().__init__(f"{where}: {message}")


# --- the model ---------------------------------------------------------------


@dataclass(frozen=True)
class TraceHeader:
    """How the recording detector was built (everything but the key): its settings whole, and the run's own values.

    On disk the settings' fields sit beside the others in one JSON object
    (spec/trace.md), as they always have.
    """

    mode: Mode
    settings: DetectorSettings
    """What failoverd built its detector with; a replay builds its own from these."""
    start: float = 0.0
    """The detector's ``now`` at construction (monotonic seconds)."""
    epoch: int = 1
    """The backup's own epoch (only its status frames depend on it)."""
    held: tuple[Triplet, ...] = ()
    port: int = 1694
    continued: bool = False
    """True in a file started by rotation: it does not begin with the daemon,
    so its replay starts from a fresh detector, not from the daemon's state."""

    def __post_init__(self) -> None:
        if self.mode not in ("legacy", "authenticated"):
            raise ValueError(f"mode must be legacy or authenticated, not {self.mode!r}")
        _check_time(self.start, "start")

    def to_json(self) -> str:
        s = self.settings
        t = s.timing
        data = {
            "addresses": [str(a) for a in s.addresses],
            "arp_probe": s.arp_probe,
            "continued": self.continued,
            "epoch": self.epoch,
            "held": [str(a) for a in self.held],
            "legacy_message": s.legacy_message.hex(),
            "master": s.master,
            "mode": self.mode,
            "peer": s.peer,
            "port": self.port,
            "start": self.start,
            "timing": {name: getattr(t, name) for name in _TIMING_FIELDS},
        }
        if s.witness is not None:
            # Only with a witness, so a trace without one reads in any earlier reader.
            data["witness"] = {name: getattr(s.witness, name) for name in _WITNESS_FIELDS}
        if s.peers:
            # Only with peers (several backups, spec/backups.md), so a pair's trace reads in any earlier reader.
            data["backups"] = {
                "peers": [[a, p] for a, p in zip(s.peers, s.peer_priorities)],
                "priority": s.priority,
                "preempt": s.preempt,
            }
        return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> TraceHeader:
        """Parse the header's JSON; raises ValueError with what is wrong."""
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise ValueError(f"header is not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise ValueError("header JSON is nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("header must be a JSON object")
        expected = {
            "addresses", "arp_probe", "continued", "epoch", "held", "legacy_message", "master", "mode",
            "peer", "port", "start", "timing",
        }
        missing = expected - data.keys()
        # replay_floor: written until the backup stopped persisting a replay
        # floor (a restarted backup now counts only heartbeats that
        # acknowledge its new epoch); accepted and ignored in older traces.
        extra = data.keys() - expected - {"replay_floor", "witness", "backups"}
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(sorted(missing)))
            if extra:
                parts.append("unknown " + ", ".join(sorted(extra)))
            raise ValueError("header fields: " + "; ".join(parts))
        timing_data = _typed(data["timing"], dict, "timing")
        unknown = timing_data.keys() - set(_TIMING_FIELDS)
        if unknown:
            raise ValueError("unknown timing fields: " + ", ".join(sorted(unknown)))
        for name, value in timing_data.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"timing.{name} must be a number or null")
        try:
            timing = Timing(**timing_data)
        except (TimingError, TypeError) as exc:
            raise ValueError(f"timing: {exc}") from None
        try:
            addresses = tuple(parse_triplet(_typed(a, str, "address")) for a in _typed(data["addresses"], list, "addresses"))
            held = tuple(parse_triplet(_typed(a, str, "held address")) for a in _typed(data["held"], list, "held"))
            master = data["master"]
            if master is not None:
                parse_ip(_typed(master, str, "master"), scoped=True)
        except AddressError as exc:
            raise ValueError(str(exc)) from None
        try:
            message = bytes.fromhex(_typed(data["legacy_message"], str, "legacy_message"))
        except ValueError:
            raise ValueError("legacy_message must be hex") from None
        witness = _parse_witness(data["witness"]) if "witness" in data else None
        peers, peer_priorities, priority, preempt = (
            _parse_backups(data["backups"]) if "backups" in data else ((), (), 100, False)
        )
        if "replay_floor" in data:
            floor = _typed(data["replay_floor"], list, "replay_floor")
            if len(floor) != 2 or not all(_is_int(v) and v >= 0 for v in floor):
                raise ValueError("replay_floor must be [epoch, seq], two non-negative integers")
        epoch = data["epoch"]
        port = data["port"]
        if not _is_int(epoch) or epoch < 0:
            raise ValueError("epoch must be a non-negative integer")
        if not _is_int(port) or not 0 < port < 65536:
            raise ValueError("port must be an integer 1..65535")
        start = data["start"]
        if isinstance(start, bool) or not isinstance(start, (int, float)):
            raise ValueError("start must be a number")
        # In the order the checks always ran: the mode, then the addresses, then the rest.
        mode = data["mode"] if data["mode"] in ("legacy", "authenticated") else _bad_mode(data["mode"])
        if not addresses:
            raise ValueError("a trace header needs at least one address")
        settings = DetectorSettings(
            addresses=addresses,
            timing=timing,
            master=master,
            legacy_message=message,
            arp_probe=_typed(data["arp_probe"], bool, "arp_probe"),
            peer=_typed(data["peer"], str, "peer"),
            witness=witness,
            peers=peers,
            peer_priorities=peer_priorities,
            priority=priority,
            preempt=preempt,
        )
        return cls(
            mode=mode,
            settings=settings,
            start=float(start),
            epoch=epoch,
            held=held,
            port=port,
            continued=_typed(data["continued"], bool, "continued"),
        )


def header_for_backup(
    config: BackupConfig,
    *,
    start: float,
    epoch: int,
    held: Iterable[Triplet] = (),
) -> TraceHeader:
    """The header for a trace of the detector failoverd builds from ``config``
    with these arguments (``start`` = the ``now`` it was built with)."""
    return TraceHeader(
        mode="authenticated" if config.authenticated else "legacy",
        settings=config.detector_settings(),
        start=float(start),
        epoch=epoch,
        held=tuple(held),
        port=config.port,
    )


# Events are plain (not frozen) slotted dataclasses: a day of heartbeats is a
# million of them, and a frozen dataclass takes about three times as long to build.


@dataclass(slots=True)
class Datagram:
    """A datagram arrived on the heartbeat port; ``verdict`` is the detector's (``accepted`` or a reason)."""

    time: float
    path: str
    source: str
    data: bytes
    verdict: str
    wall: float | None = None


@dataclass(slots=True)
class TimerFired:
    time: float


@dataclass(slots=True)
class ActionResult:
    time: float
    result: Result


@dataclass(slots=True)
class ConflictSeen:
    """Another host's ARP claimed ``addresses`` on the wire (``Detector.conflict_seen``)."""

    time: float
    addresses: frozenset[Triplet]


@dataclass(slots=True)
class HealthChanged:
    """This host's health checks turned unhealthy or healthy again (``Detector.health_changed``)."""

    time: float
    healthy: bool
    reason: str = ""


@dataclass(slots=True)
class LinkChanged:
    """The link of one of the detector's interfaces went down or came up (``Detector.link_changed``)."""

    time: float
    interface: str
    up: bool


@dataclass(slots=True)
class StopRequested:
    """The daemon stopped (``Detector.shutdown``); ``release``: it released what it held (not ``--keep-addresses-on-exit``)."""

    time: float
    release: bool = True


@dataclass(slots=True)
class Lost:
    """The writer dropped ``count`` events before this point: replay cannot be exact past it."""

    time: float
    count: int


@dataclass(slots=True)
class End:
    """The recording ended at ``time``; ``full``: because the size limit was reached."""

    time: float
    full: bool = False


Event = Datagram | TimerFired | ActionResult | ConflictSeen | HealthChanged | LinkChanged | StopRequested | Lost | End

Arrival = tuple[float, str, str, bytes, float | None]
"""``(time, path, source, data, wall)`` of one datagram: all that what-if
replay takes from a trace or a capture. A plain tuple, not an event object: a
day of heartbeats is 864,000 of them, and a tuple is built about four times faster."""


@dataclass
class Trace:
    header: TraceHeader
    events: list[Event]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """(line, reason) of each bad line skipped (only with ``skip_bad``)."""

    @property
    def end(self) -> float | None:
        """The time of the end line (``None``: the daemon did not close the trace)."""
        for event in reversed(self.events):
            if isinstance(event, End):
                return event.time
        return None

    @property
    def last_time(self) -> float:
        """The time of the last event (the header's start in an empty trace)."""
        return self.events[-1].time if self.events else self.header.start

    @property
    def lost(self) -> int:
        """Events the writer dropped (``lost`` lines)."""
        return sum(e.count for e in self.events if isinstance(e, Lost))

    def arrivals(self) -> list[Arrival]:
        """The recorded datagrams, as what-if replay takes them."""
        return [(e.time, e.path, e.source, e.data, e.wall) for e in self.events if isinstance(e, Datagram)]


# --- formatting ----------------------------------------------------------------


def format_event(event: Event) -> str:
    """One event as its line, without the newline."""
    if isinstance(event, Datagram):
        wall = "-" if event.wall is None else repr(float(event.wall))
        payload = event.data.hex() if event.data else "-"
        return f"d {event.time!r} {wall} {event.path} {event.source} {event.verdict} {payload}"
    if isinstance(event, TimerFired):
        return f"t {event.time!r}"
    if isinstance(event, ActionResult):
        return format_result(event.time, event.result)
    if isinstance(event, ConflictSeen):
        return format_conflict(event.time, event.addresses)
    if isinstance(event, HealthChanged):
        return format_health(event.time, event.healthy, event.reason)
    if isinstance(event, LinkChanged):
        return format_link(event.time, event.interface, event.up)
    if isinstance(event, StopRequested):
        return format_stop(event.time, event.release)
    if isinstance(event, Lost):
        return f"lost {event.time!r} {event.count}"
    if isinstance(event, End):
        return f"end {event.time!r}" + (" full" if event.full else "")
    raise TypeError(f"not a trace event: {event!r}")


def format_result(now: float, result: Result) -> str:
    if isinstance(result, ClaimDone):
        return (f"r {float(now)!r} claim {result.outcome} {float(result.sent_at)!r} {float(result.answered_at)!r} "
                f"{_detail_field(result.detail)}")
    if isinstance(result, RenewDone):
        return f"r {float(now)!r} renew {result.outcome} {float(result.sent_at)!r} {_detail_field(result.detail)}"
    if isinstance(result, ReachDone):
        return f"r {float(now)!r} reach {result.outcome} {float(result.sent_at)!r} {_detail_field(result.detail)}"
    kind = _RESULT_KIND.get(type(result))
    if kind is None:
        raise TypeError(f"not an action result: {result!r}")
    parts = [f"r {float(now)!r} {kind}"]
    for name in _RESULT_FIELDS[kind]:
        parts.extend(f"{name}={text}" for text in sorted(str(a) for a in getattr(result, name)))
    return " ".join(parts)


def format_conflict(now: float, addresses: Iterable[Triplet]) -> str:
    texts = sorted({str(a) for a in addresses})
    if not texts:
        raise ValueError("a conflict names at least one address")
    return f"c {float(now)!r} " + " ".join(texts)


def format_health(now: float, healthy: bool, reason: str) -> str:
    """``h TIME healthy|unhealthy REASON``: the reason as lower-case hex of its UTF-8 (``-`` when empty)."""
    text = reason.encode("utf-8").hex() if reason else "-"
    return f"h {float(now)!r} {'healthy' if healthy else 'unhealthy'} {text}"


def format_link(now: float, interface: str, up: bool) -> str:
    """``l TIME INTERFACE up|down``."""
    if not _is_interface_name(interface):
        raise ValueError(f"not an interface name: {interface!r}")
    return f"l {float(now)!r} {interface} {'up' if up else 'down'}"


def _is_interface_name(name: str) -> bool:
    """An interface name as Linux allows it (1-15 bytes, no space, slash or NUL) and a line can carry."""
    return 0 < len(name.encode()) < 16 and name.isprintable() and not any(c in name for c in " /\0") and name.isascii()


def format_stop(now: float, release: bool) -> str:
    """``s TIME`` (the stop releases what is held) or ``s TIME keep``."""
    return f"s {float(now)!r}" + ("" if release else " keep")


def check_token(value: str, what: str) -> str:
    """``value`` if it can be one space-separated field of a line (a path, a source, a verdict); else ValueError."""
    if not value or not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(f"{what} {value!r} must be printable ASCII without spaces")
    return value


def _check_time(value: float, what: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of seconds, not {value!r}")


# --- the reader ------------------------------------------------------------------


def read_trace(path: str | os.PathLike[str], *, skip_bad: bool = False) -> Trace:
    """Read a whole trace file; see :func:`parse_trace`."""
    with open(path, "rb") as f:
        return parse_trace(f, name=str(path), skip_bad=skip_bad)


def is_trace(prefix: bytes) -> bool:
    """Whether a file starting with ``prefix`` claims to be a native trace (any version)."""
    return prefix.startswith(MAGIC_PREFIX)


def parse_trace(lines: Iterable[bytes], *, name: str = "<trace>", skip_bad: bool = False) -> Trace:
    """Parse a trace from its raw lines (each with its ``\\n``).

    Raises :class:`TraceError` for the first bad line; with ``skip_bad``, bad
    event lines are skipped and listed in :attr:`Trace.skipped` instead (a bad
    header is never skippable: nothing after it could be trusted).
    """
    iterator = iter(lines)
    header = _parse_header(iterator, name)
    events: list[Event] = []
    append = events.append
    skipped: list[tuple[int, str]] = []
    last = header.start
    ended = False
    tails: dict[bytes, tuple[str, str, bytes, str]] = {}
    lineno = 2
    for lineno, raw in enumerate(iterator, 3):
        if raw[:2] == b"d " and not ended:
            datagram = _common_datagram(raw, last, tails)
            if datagram is not None:
                last = datagram.time
                append(datagram)
                continue
        try:
            if not raw.endswith(b"\n"):
                raise ValueError("truncated line (no newline at the end of the file)")
            if raw[:1] == b"#":
                continue
            if ended:
                raise ValueError("event after the end line")
            event = _parse_event(raw)
            if event.time < last:
                raise ValueError(f"time goes backwards: {event.time!r} after {last!r}")
        except ValueError as exc:
            message = str(exc) if not isinstance(exc, UnicodeDecodeError) else "not ASCII text"
            if not skip_bad:
                raise TraceError(name, lineno, message) from None
            skipped.append((lineno, message))
            continue
        last = event.time
        if isinstance(event, End):
            ended = True
        append(event)
    return Trace(header, events, skipped)


def _common_datagram(raw: bytes, last: float, tails: dict[bytes, tuple[str, str, bytes, str]]) -> Datagram | None:
    """The bulk of a trace, cheaply: a valid datagram line, else None (the full parser then says what is wrong).

    A daemon's datagram lines differ mostly in their times: the rest of the
    line (path, source, verdict, payload; the newline included, so a
    truncated last line never matches) is checked once and remembered in
    ``tails``. Accepts exactly what :func:`_parse_event` accepts, with the same result.
    """
    parts = raw.split(b" ", 3)
    if len(parts) != 4:
        return None
    _, time_text, wall_text, tail_text = parts
    tail = tails.get(tail_text)
    if tail is None:
        if tail_text[-1:] != b"\n" or not tail_text.isascii():
            return None
        try:
            tail = _parse_datagram_tail(tail_text[:-1].decode("ascii").split(" "))
        except ValueError:
            return None
        if len(tails) >= _TAIL_CACHE_SIZE:
            tails.clear()  # authenticated payloads never repeat: keep the memory bounded
        tails[tail_text] = tail
    try:
        time = float(time_text)
        wall = None if wall_text == b"-" else float(wall_text)
    except ValueError:
        return None
    # float() also takes "1_0", " 1", "nan" and "inf": one spelling only, and finite.
    if not (time >= last and time - time == 0.0 and repr(time).encode() == time_text):
        return None
    if wall is not None and not (wall - wall == 0.0 and repr(wall).encode() == wall_text):
        return None
    path, source, data, verdict = tail
    return Datagram(time, path, source, data, verdict, wall)


def _parse_header(lines: Iterator[bytes], name: str) -> TraceHeader:
    first = next(lines, b"")
    if not first:
        raise TraceError(name, 0, "empty file, not a failoverd trace")
    if not first.startswith(MAGIC_PREFIX):
        raise TraceError(name, 1, f"not a failoverd trace (first line should be {MAGIC.strip()!r})")
    version = first[len(MAGIC_PREFIX):].strip()
    if first != MAGIC.encode("ascii"):
        shown = version.decode("ascii", "replace")[:20]
        raise TraceError(name, 1, f"unsupported trace format version {shown!r}: this failoverd reads version {FORMAT_VERSION}")
    second = next(lines, b"")
    if not second:
        raise TraceError(name, 1, "the file ends after the first line: the header line is missing")
    if not second.endswith(b"\n"):
        raise TraceError(name, 2, "truncated header line")
    if not second.startswith(b"header "):
        raise TraceError(name, 2, "expected the header line ('header {...}')")
    try:
        text = second[7:-1].decode("ascii")
        return TraceHeader.from_json(text)
    except UnicodeDecodeError:
        raise TraceError(name, 2, "header is not ASCII text") from None
    except ValueError as exc:
        raise TraceError(name, 2, f"bad header: {exc}") from None


def _parse_event(raw: bytes) -> Event:
    line = raw[:-1].decode("ascii")
    fields = line.split(" ")
    kind = fields[0]
    if kind == "d":
        if len(fields) != 7:
            raise ValueError(f"a datagram line has 7 fields, this one {len(fields)}")
        path, source, data, verdict = _parse_datagram_tail(fields[3:])
        return Datagram(
            _parse_time(fields[1]),
            path,
            source,
            data,
            verdict,
            None if fields[2] == "-" else _parse_time(fields[2], "wall time"),
        )
    if kind == "t":
        if len(fields) != 2:
            raise ValueError(f"a timer line has 2 fields, this one {len(fields)}")
        return TimerFired(_parse_time(fields[1]))
    if kind == "r":
        return _parse_result(fields)
    if kind == "c":
        return _parse_conflict(fields)
    if kind == "h":
        return _parse_health(fields)
    if kind == "l":
        if len(fields) != 4 or fields[3] not in ("up", "down") or not _is_interface_name(fields[2]):
            raise ValueError("a link line is 'l TIME INTERFACE up|down'")
        return LinkChanged(_parse_time(fields[1]), fields[2], fields[3] == "up")
    if kind == "s":
        if len(fields) == 2:
            return StopRequested(_parse_time(fields[1]))
        if len(fields) == 3 and fields[2] == "keep":
            return StopRequested(_parse_time(fields[1]), False)
        raise ValueError("a stop line is 's TIME' or 's TIME keep'")
    if kind == "lost":
        if len(fields) != 3 or not fields[2].isdigit() or fields[2] != str(int(fields[2])) or int(fields[2]) == 0:
            raise ValueError("a lost line is 'lost TIME COUNT' with a positive count")
        return Lost(_parse_time(fields[1]), int(fields[2]))
    if kind == "end":
        if len(fields) == 2:
            return End(_parse_time(fields[1]))
        if len(fields) == 3 and fields[2] == "full":
            return End(_parse_time(fields[1]), True)
        raise ValueError("an end line is 'end TIME' or 'end TIME full'")
    raise ValueError(f"unknown event {kind[:20]!r} (expected d, t, r, c, h, l, s, lost or end)")


def _parse_datagram_tail(fields: list[str]) -> tuple[str, str, bytes, str]:
    """(path, source, data, verdict) from a datagram line's last four fields."""
    if len(fields) != 4:
        raise ValueError(f"a datagram line has 7 fields, this one {len(fields) + 3}")
    path, source, verdict, payload = fields
    for value, what in ((path, "path"), (source, "source"), (verdict, "verdict")):
        if not value or not value.isprintable():
            raise ValueError(f"empty or unprintable {what}")
    return path, source, _parse_payload(payload), verdict


def _parse_time(text: str, what: str = "time") -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text[:30]!r} is not a number") from None
    if value - value != 0.0:
        raise ValueError(f"{what} {text[:30]!r} is not finite")
    if repr(value) != text:
        raise ValueError(f"{what} {text[:30]!r} is not in canonical form (expected {value!r})")
    return value


def _parse_payload(text: str) -> bytes:
    if text == "-":
        return b""
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise ValueError("payload is not hex") from None
    # fromhex also takes spaces and upper case; one spelling only.
    if not data or len(data) * 2 != len(text) or text != text.lower():
        raise ValueError("payload must be lower-case hex without spaces ('-' when empty)")
    return data


def _parse_result(fields: list[str]) -> ActionResult:
    if len(fields) < 3:
        raise ValueError("a result line is 'r TIME probe|acquire|release|claim|renew|reach ...'")
    time = _parse_time(fields[1])
    kind = fields[2]
    if kind in ("claim", "renew", "reach"):
        return ActionResult(time, _parse_witness_answer(kind, fields))
    names = _RESULT_FIELDS.get(kind)
    if names is None:
        raise ValueError(f"unknown result {kind[:20]!r} (expected probe, acquire, release, claim, renew or reach)")
    sets: dict[str, list[Triplet]] = {n: [] for n in names}
    for token in fields[3:]:
        key, eq, value = token.partition("=")
        if not eq or key not in sets:
            raise ValueError(f"{kind} result field {token[:40]!r} is not one of " + ", ".join(f"{n}=ADDRESS" for n in names))
        try:
            sets[key].append(parse_triplet(value))
        except AddressError as exc:
            raise ValueError(str(exc)) from None
    result = _RESULT_TYPES[kind](**{n: frozenset(v) for n, v in sets.items()})
    if format_result(time, result) != " ".join(fields):
        raise ValueError("result fields are not in canonical order (fields in order, addresses sorted, no duplicates)")
    return ActionResult(time, result)


def _parse_witness_answer(kind: str, fields: list[str]) -> ClaimDone | RenewDone | ReachDone:
    """``r TIME claim OUTCOME SENT ANSWERED DETAIL``, ``r TIME renew OUTCOME SENT DETAIL`` or
    ``r TIME reach OUTCOME SENT DETAIL``."""
    if kind == "reach":
        if len(fields) != 6 or fields[3] not in _REACH_OUTCOMES:
            raise ValueError("a reach result is 'r TIME reach answered|unreachable SENT DETAIL'")
        return ReachDone(fields[3], _parse_time(fields[4], "sent time"), _parse_detail(fields[5]))  # type: ignore[arg-type]
    if kind == "claim":
        if len(fields) != 7 or fields[3] not in _CLAIM_OUTCOMES:
            raise ValueError("a claim result is 'r TIME claim granted|refused|unreachable SENT ANSWERED DETAIL'")
        return ClaimDone(fields[3], _parse_time(fields[4], "sent time"),  # type: ignore[arg-type]
                         _parse_time(fields[5], "answer time"), _parse_detail(fields[6]))
    if len(fields) != 6 or fields[3] not in _RENEW_OUTCOMES:
        raise ValueError("a renew result is 'r TIME renew proved|lost|unreachable SENT DETAIL'")
    return RenewDone(fields[3], _parse_time(fields[4], "sent time"), _parse_detail(fields[5]))  # type: ignore[arg-type]


def _detail_field(detail: str) -> str:
    return detail.encode("utf-8").hex() if detail else "-"


def _parse_detail(text: str) -> str:
    if text == "-":
        return ""
    try:
        return _parse_payload(text).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("a witness answer's detail is not UTF-8") from None


def _parse_backups(value: object) -> tuple[tuple[str, ...], tuple[int, ...], int, bool]:
    """The header's ``backups``: the peers' addresses and priorities, our priority, whether we preempt."""
    data = _typed(value, dict, "backups")
    if data.keys() != {"peers", "priority", "preempt"}:
        raise ValueError("backups fields: expected peers, preempt, priority")
    pairs = _typed(data["peers"], list, "backups.peers")
    if not pairs:
        raise ValueError("backups.peers must name at least one peer")
    peers: list[str] = []
    peer_priorities: list[int] = []
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError("backups.peers: each peer must be [address, priority]")
        address, priority = pair
        peers.append(_typed(address, str, "backups.peers address"))
        if not _is_int(priority) or not 1 <= priority <= 254:
            raise ValueError("backups.peers priority must be an integer 1..254")
        peer_priorities.append(priority)
    try:
        for p in peers:
            parse_ip(p, scoped=True)
    except AddressError as exc:
        raise ValueError(f"backups.peers: {exc}") from None
    priority = data["priority"]
    if not _is_int(priority) or not 1 <= priority <= 254:
        raise ValueError("backups.priority must be an integer 1..254")
    return tuple(peers), tuple(peer_priorities), priority, _typed(data["preempt"], bool, "backups.preempt")


def _parse_witness(value: object) -> WitnessTiming:
    data = _typed(value, dict, "witness")
    # keep_on_outage: absent in traces written before --etcd-unreachable keep was coded (they dropped).
    if not set(_WITNESS_FIELDS) - {"keep_on_outage"} <= data.keys() <= set(_WITNESS_FIELDS):
        raise ValueError("witness fields: expected " + ", ".join(_WITNESS_FIELDS))
    for name, field_value in data.items():
        if name == "keep_on_outage":
            if not isinstance(field_value, bool):
                raise ValueError("witness.keep_on_outage must be true or false")
        elif isinstance(field_value, bool) or not isinstance(field_value, (int, float)):
            raise ValueError(f"witness.{name} must be a number")
    try:
        return WitnessTiming(**data)
    except WitnessTimingError as exc:
        raise ValueError(f"witness: {exc}") from None


def _parse_conflict(fields: list[str]) -> ConflictSeen:
    if len(fields) < 3:
        raise ValueError("a conflict line is 'c TIME ADDRESS [ADDRESS ...]'")
    texts = fields[2:]
    try:
        addresses = [parse_triplet(text) for text in texts]
    except AddressError as exc:
        raise ValueError(f"bad address in a conflict line: {exc}") from None
    if [str(a) for a in addresses] != sorted(set(texts)):
        raise ValueError("conflict addresses are not in canonical order (as written, sorted, no duplicates)")
    return ConflictSeen(_parse_time(fields[1]), frozenset(addresses))


def _parse_health(fields: list[str]) -> HealthChanged:
    if len(fields) != 4 or fields[2] not in ("healthy", "unhealthy"):
        raise ValueError("a health line is 'h TIME healthy|unhealthy REASON' (REASON: hex, '-' when empty)")
    healthy = fields[2] == "healthy"
    try:
        reason = _parse_payload(fields[3]).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("a health line's reason is not UTF-8") from None
    return HealthChanged(_parse_time(fields[1]), healthy, reason)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid number in a trace header")


def _typed(value: object, kind: type, what: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{what} must be a {kind.__name__}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad_mode(mode: object) -> Mode:
    raise ValueError(f"mode must be legacy or authenticated, not {str(mode)[:20]!r}")

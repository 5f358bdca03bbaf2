"""What ``failoverctl replay`` and ``sweep`` run: an input loaded and set up, replayed, swept.

The input is a native trace or a packet capture; :func:`load` tells them by
their first bytes and sets up the detector a replay builds (:class:`Loaded`):
from a trace's header, or for a capture from what the request says (the
master, its addresses, the port, the legacy message) and failoverd's
defaults. The program (:mod:`failoverd.programs.failoverctl_replay`) turns
its command line into a :class:`Request` and prints what comes back
(:mod:`failoverd.analysis.report`).

Error handling: everything that stops a replay is a :class:`ReplayError`
whose ``status`` is the exit status it means (64 usage, 65 bad data, 66
unreadable input, 78 an unusable key as the request's ``read_key`` reports it).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failoverd.analysis.pcapimport import CaptureError, heartbeat_senders, is_capture, read_capture
from failoverd.analysis.replay import ActionModel, ReplayResult, Setup, replay_exact, replay_what_if
from failoverd.analysis.report import SweepRow
from failoverd.analysis.trace import Arrival, Event, Trace, TraceError, is_trace, read_trace
from failoverd.core.addresses import Triplet, parse_triplet
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing, TimingError

PLACEHOLDER_ADDRESS = parse_triplet("public:0.0.0.0")
"""Stands for the master's public addresses, which a capture does not show (--address names them)."""


class ReplayError(Exception):
    """Why an input cannot be replayed as asked; ``status`` is the exit status (sysexits) it means."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Loaded:
    """A trace or capture, ready to replay."""

    kind: str
    """"trace", "pcap" or "pcapng"."""
    setup: Setup
    trace: Trace | None
    """A native trace (``None``: a capture)."""
    capture_arrivals: list[Arrival]
    end: float
    exact_possible: bool
    notes: list[str]

    @property
    def events(self) -> list[Event]:
        """Exact replay's input: the native trace's events."""
        return [] if self.trace is None else self.trace.events

    @functools.cached_property
    def arrivals(self) -> list[Arrival]:
        """What-if replay's input (taken from a native trace's events on first use only)."""
        return self.capture_arrivals if self.trace is None else self.trace.arrivals()

    @property
    def lost(self) -> int:
        return 0 if self.trace is None else self.trace.lost


@dataclass(frozen=True)
class Request:
    """What to replay and how, as failoverctl's options say (names as the options)."""

    trace: Path
    """The input: a native trace, a pcap or a pcapng file."""
    read_key: Callable[[], bytes | None] = lambda: None
    """The shared key (``--key-file``), read only when the input needs it; None: none given."""
    skip_bad: bool = False
    master: str | None = None
    """Captures: the master's private address (needed only when several hosts sent heartbeats)."""
    address: tuple[Triplet, ...] | None = None
    """Captures: the master's public addresses (a capture does not show them)."""
    port: int | None = None
    message: str | None = None
    """Captures, legacy mode: the master's heartbeat text."""
    timing: dict[str, Any] = field(default_factory=dict)
    """What-if timing: :class:`~failoverd.core.timing.Timing` fields to change (none: as recorded)."""


# --- loading ----------------------------------------------------------------------


def timing_with(base: Timing, overrides: dict[str, Any]) -> Timing:
    """``base`` with the what-if timing options given; a timing that cannot work is a usage error."""
    try:
        return dataclasses.replace(base, **overrides)
    except TimingError as exc:
        raise ReplayError(os.EX_USAGE, f"timing: {exc}") from None


def load(request: Request) -> Loaded:
    """Read ``request.trace`` (a native trace, pcap or pcapng: told by its first bytes) and set up its replay."""
    args, overrides = request, request.timing
    try:
        with open(args.trace, "rb") as f:
            prefix = f.read(32)
    except OSError as exc:
        raise ReplayError(os.EX_NOINPUT, f"cannot read {args.trace}: {exc.strerror or exc}") from None
    try:
        if is_trace(prefix):
            return _load_trace(args, overrides)
        if is_capture(prefix):
            return _load_capture(args, overrides)
    except (TraceError, CaptureError) as exc:
        raise ReplayError(os.EX_DATAERR, str(exc)) from None
    except OSError as exc:
        raise ReplayError(os.EX_NOINPUT, f"cannot read {args.trace}: {exc.strerror or exc}") from None
    raise ReplayError(os.EX_DATAERR, f"{args.trace}: neither a failoverd trace nor a pcap or pcapng capture")


def _load_trace(args: Request, overrides: dict[str, Any]) -> Loaded:
    trace = read_trace(args.trace, skip_bad=args.skip_bad)
    header = trace.header
    for option, value in (("--master", args.master), ("--address", args.address), ("--port", args.port),
                          ("--message", args.message)):
        if value is not None:
            raise ReplayError(os.EX_USAGE, f"{option} applies to captures; a native trace records it in its header")
    key = args.read_key()
    if header.mode == "authenticated" and key is None:
        raise ReplayError(
            os.EX_USAGE,
            f"{args.trace} was recorded with authenticated heartbeats; replay needs the same key: --key-file FILE",
        )
    if header.mode == "legacy" and key is not None:
        raise ReplayError(os.EX_USAGE, f"{args.trace} was recorded in legacy mode; --key-file does not apply")
    notes = []
    if trace.skipped:
        notes.append(f"skipped {len(trace.skipped)} bad line(s), first at line {trace.skipped[0][0]}: {trace.skipped[0][1]}")
    if header.continued:
        notes.append("this file was started by rotation, not with the daemon: its replay starts from a fresh "
                     "detector, so the first transitions may differ from the daemon's")
    setup = Setup.from_header(header, key, timing_with(header.settings.timing, overrides))
    end = trace.last_time if trace.end is None else trace.end
    return Loaded("trace", setup, trace, [], end, exact_possible=not overrides, notes=notes)


def _load_capture(args: Request, overrides: dict[str, Any]) -> Loaded:
    port = args.port or 1694
    capture = read_capture(args.trace, port=port, skip_bad=args.skip_bad)
    notes = []
    if capture.skipped:
        notes.append(f"skipped {len(capture.skipped)} bad packet(s), first #{capture.skipped[0][0]}: {capture.skipped[0][1]}")
    if not capture.datagrams:
        raise ReplayError(os.EX_DATAERR, f"{args.trace}: no UDP datagrams (IPv4 or IPv6) to port {port} among its "
                                         f"{capture.packets} packets (is --port right?)")
    key = args.read_key()
    message = b"heartbeat" if args.message is None else args.message.encode("utf-8", "surrogateescape")
    try:
        senders = heartbeat_senders(capture.datagrams, key=key, legacy_message=message)
    except ValueError as exc:
        raise ReplayError(os.EX_USAGE if key is None else os.EX_DATAERR, f"{args.trace}: {exc}") from None
    master = None if args.master is None else _capture_spelling(args.trace, args.master, senders)
    datagrams = capture.datagrams
    if master is None and key is None:
        if len(senders) > 1:
            listed = ", ".join(f"{s} ({n})" for s, n in senders.most_common())
            raise ReplayError(os.EX_USAGE, f"{args.trace}: heartbeats from several senders: {listed}; "
                                           "say which is the master with --master ADDRESS")
        master = next(iter(senders))
    elif master is not None and key is not None:
        datagrams = [d for d in datagrams if d[2] == master]
    addresses = tuple(args.address) if args.address else (PLACEHOLDER_ADDRESS,)
    if not args.address:
        notes.append(f"the master's public addresses are not in a capture; {PLACEHOLDER_ADDRESS} stands for "
                     "them (--address names them)")
    settings = DetectorSettings(
        addresses=addresses,
        timing=timing_with(Timing(), overrides),
        master=master,
        legacy_message=message,
        peer=master or "master",
    )
    setup = Setup(settings, capture.start, key=key)
    return Loaded(capture.format, setup, None, datagrams, capture.end, exact_possible=False, notes=notes)


def _capture_spelling(trace: Path, master: str, senders: Counter[str]) -> str:
    """``--master`` as the capture spells that sender.

    A pcap names no interface, so its link-local senders have no scope while
    ``--master fe80::1%eth1`` has one (and a pcapng's have one where the
    option may not): the address decides, and the scope only where both
    sides have one. Raises :class:`ReplayError` when no sender matches, or
    when a bare link-local ``--master`` matches senders on several interfaces.
    """
    if master in senders:
        return master
    address, _, scope = master.partition("%")
    matches = [
        sender for sender in senders
        if sender.partition("%")[0] == address and not (scope and "%" in sender and sender.partition("%")[2] != scope)
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ReplayError(os.EX_USAGE, f"{trace}: --master {master} sent heartbeats on several interfaces "
                                       f"({', '.join(sorted(matches))}): name its scope, e.g. --master {matches[0]}")
    raise ReplayError(os.EX_USAGE, f"{trace}: no heartbeats from --master {master} "
                                   f"(senders: {', '.join(sorted(senders)) or 'none'})")


# --- replaying ----------------------------------------------------------------------


def replay_loaded(
    loaded: Loaded, *, what_if: bool, model: ActionModel, outage: float, timing: Timing | None = None
) -> ReplayResult:
    """Exact replay when the input allows it and nothing else was asked; what-if (under ``model``)
    otherwise, or with ``timing``. ``outage``: see :func:`~failoverd.analysis.replay.replay_exact`."""
    if timing is None and loaded.exact_possible and not what_if:
        result = replay_exact(loaded.setup, loaded.events, outage=outage)
    else:
        setup = loaded.setup if timing is None else loaded.setup.with_timing(timing)
        result = replay_what_if(setup, loaded.arrivals, model=model, end=loaded.end, lost=loaded.lost,
                                outage=outage)
    result.notes[:0] = loaded.notes
    return result


def sweep(
    base: Loaded, misses: tuple[int, int] | None, *, model: ActionModel, outage: float
) -> tuple[list[SweepRow], list[str]]:
    """One what-if replay per fail-misses value in ``misses`` (default: suspect misses + 1 up to 10):
    the rows (:class:`~failoverd.analysis.report.SweepRow`) and the values skipped, with why."""
    suspect = base.setup.timing.suspect_misses
    low, high = misses or (suspect + 1, max(suspect + 1, 10))
    rows: list[SweepRow] = []
    skipped: list[str] = []
    for count in range(low, high + 1):
        try:
            timing = dataclasses.replace(base.setup.timing, fail_misses=count)
        except TimingError as exc:
            skipped.append(f"fail misses {count}: {exc}")
            continue
        rows.append(SweepRow.from_result(timing, replay_loaded(base, what_if=True, model=model, outage=outage, timing=timing)))
    if not rows:
        raise ReplayError(os.EX_USAGE, "no fail-misses value in the range gives a usable timing: " + "; ".join(skipped))
    return rows, skipped

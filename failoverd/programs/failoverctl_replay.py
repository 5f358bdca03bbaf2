"""failoverctl replay / sweep: "why did it fail over at 03:12?" and "would another timeout have helped?".

    failoverctl replay TRACE [--json] [--what-if] [timing and capture options]
    failoverctl sweep  TRACE [--misses LOW-HIGH] [--plot FILE.png] [--json] [...]

TRACE is a native trace (written by failoverd --trace), a pcap or a pcapng
file; the kind is recognised by its first bytes. A native trace replays
exactly as recorded unless timing options (or --what-if) ask for another
setting; a capture always replays under the what-if model (see
:mod:`failoverd.analysis.replay`). Timing options default to the recording daemon's
(native trace) or to failoverd's defaults (capture).

Exit status (sysexits): 0 done; 64 usage (options, or an input that needs an
option it was not given, e.g. a key); 65 a bad trace or capture; 66 TRACE
cannot be read; 78 an unusable key file.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from failoverd.core.addresses import AddressError, Triplet, parse_ipv4, parse_triplet
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing, TimingError

# The same checks as the daemons' own options, so a what-if parses as failoverd would.
from failoverd.cli.argparser import ArgumentParser, parse_or_exit
from failoverd.cli.options import count_at_least, seconds, seconds_or_zero
from failoverd.analysis.pcapimport import (
    CaptureError,
    heartbeat_senders,
    is_capture,
    read_capture,
)
from failoverd.analysis.replay import (
    DEFAULT_OUTAGE,
    ActionModel,
    ReplayResult,
    Setup,
    replay_exact,
    replay_what_if,
)
from failoverd.analysis.report import SweepRow, render_replay, render_sweep
from failoverd.analysis.trace import Arrival, Event, Trace, TraceError, is_trace, read_trace

PLACEHOLDER_ADDRESS = parse_triplet("public:0.0.0.0")
"""Stands for the master's public addresses, which a capture does not show (--address names them)."""
_TIMING_OPTIONS = ("interval", "suspect_misses", "fail_misses", "allowance", "probe_count", "probe_spacing")


class ReplayError(Exception):
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


# --- options ----------------------------------------------------------------------


def _triplet(text: str) -> Triplet:
    try:
        return parse_triplet(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ipv4(text: str) -> str:
    try:
        return str(parse_ipv4(text))
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"not a UDP port (1..65535): {text!r}")
    return int(text)


def _misses_range(text: str) -> tuple[int, int]:
    low, dash, high = text.partition("-")
    if not dash or not low.isdigit() or not high.isdigit() or not 1 <= int(low) <= int(high) <= 1000:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH fail misses, e.g. 2-10, not {text!r}")
    return int(low), int(high)


def _input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", metavar="TRACE", type=Path, help="native trace, pcap or pcapng file")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip bad lines or packets (counted) instead of stopping at the first")
    parser.add_argument("--key-file", metavar="FILE", type=Path,
                        help="the shared heartbeat key (authenticated heartbeats cannot be replayed without it)")
    capture = parser.add_argument_group("captures (pcap, pcapng)")
    capture.add_argument("--master", metavar="ADDRESS", type=_ipv4,
                         help="the master's private address (needed only when several hosts sent heartbeats)")
    capture.add_argument("--address", metavar="IF:ADDR[/MASK]", type=_triplet, action="append",
                         help="a public address of the master, for the timeline (repeatable)")
    capture.add_argument("--port", metavar="PORT", type=_port, default=None,
                         help="the heartbeat port (default 1694)")
    capture.add_argument("--message", metavar="TEXT", default=None,
                         help="legacy mode: the master's heartbeat text (default 'heartbeat')")
    timing = parser.add_argument_group("what-if timing (default: the recording daemon's, or failoverd's defaults)")
    timing.add_argument("--interval", metavar="SECONDS", type=seconds)
    timing.add_argument("--suspect-misses", metavar="N", type=count_at_least(1))
    timing.add_argument("--fail-misses", metavar="N", type=count_at_least(1))
    timing.add_argument("--allowance", metavar="SECONDS", type=seconds_or_zero)
    timing.add_argument("--probe-count", metavar="N", type=count_at_least(0))
    timing.add_argument("--probe-spacing", metavar="SECONDS", type=seconds)
    model = parser.add_argument_group("what-if model of the world")
    model.add_argument("--what-if", action="store_true",
                       help="replay a native trace under the model even with its recorded timing")
    model.add_argument("--probe-answers", action="store_true",
                       help="the master's addresses answer ARP probes (default: probes are silent)")
    model.add_argument("--probe-latency", metavar="SECONDS", type=seconds_or_zero, default=0.0,
                       help="how long an ARP probe takes (default 0)")
    model.add_argument("--action-latency", metavar="SECONDS", type=seconds_or_zero, default=0.0,
                       help="how long acquiring or releasing addresses takes (default 0)")
    model.add_argument("--outage", metavar="SECONDS", type=seconds, default=DEFAULT_OUTAGE,
                       help=f"legacy heartbeats: a silence this long is a real outage, so a failover on it is "
                            f"not false (default {DEFAULT_OUTAGE:g}; authenticated ones tell by the master's epoch)")


def add_replay(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``failoverctl replay`` (``common`` holds control-socket options, not used here)."""
    parser = commands.add_parser(
        "replay", help="replay a trace or capture through the detector: timeline and summary",
        description="Feed a trace or packet capture through failoverd's detector under a virtual clock and "
                    "print the timeline of state changes and actions and a summary.",
    )
    _input_options(parser)
    parser.set_defaults(run=run_replay)


def add_sweep(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``failoverctl sweep``."""
    parser = commands.add_parser(
        "sweep", help="replay a trace with a range of timeouts: detection time against false failovers",
        description="Replay a trace or capture once per failure timeout (fail misses x interval) under the "
                    "what-if model and tabulate detection time against false failovers.",
    )
    _input_options(parser)
    parser.add_argument("--misses", metavar="LOW-HIGH", type=_misses_range, default=None,
                        help="fail misses to try (default: suspect misses + 1 up to 10)")
    parser.add_argument("--plot", metavar="FILE.png", type=Path, help="also draw the sweep to FILE.png")
    parser.set_defaults(run=run_sweep)


# --- loading -----------------------------------------------------------------------


def _timing_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _TIMING_OPTIONS if getattr(args, name) is not None}


def _timing(base: Timing, overrides: dict[str, Any]) -> Timing:
    try:
        return dataclasses.replace(base, **overrides)
    except TimingError as exc:
        raise ReplayError(os.EX_USAGE, f"timing: {exc}") from None


def _key(args: argparse.Namespace) -> bytes | None:
    if args.key_file is None:
        return None
    from failoverd.system.keyfile import KeyFileError, read_key

    try:
        return read_key(args.key_file)
    except KeyFileError as exc:
        raise ReplayError(os.EX_CONFIG, str(exc)) from None


def load(args: argparse.Namespace, timing_overrides: dict[str, Any] | None = None) -> Loaded:
    overrides = _timing_overrides(args) if timing_overrides is None else timing_overrides
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


def _load_trace(args: argparse.Namespace, overrides: dict[str, Any]) -> Loaded:
    trace = read_trace(args.trace, skip_bad=args.skip_bad)
    header = trace.header
    for option, value in (("--master", args.master), ("--address", args.address), ("--port", args.port),
                          ("--message", args.message)):
        if value is not None:
            raise ReplayError(os.EX_USAGE, f"{option} applies to captures; a native trace records it in its header")
    key = _key(args)
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
    setup = Setup.from_header(header, key, _timing(header.settings.timing, overrides))
    end = trace.last_time if trace.end is None else trace.end
    return Loaded("trace", setup, trace, [], end, exact_possible=not overrides, notes=notes)


def _load_capture(args: argparse.Namespace, overrides: dict[str, Any]) -> Loaded:
    port = args.port or 1694
    capture = read_capture(args.trace, port=port, skip_bad=args.skip_bad)
    notes = []
    if capture.skipped:
        notes.append(f"skipped {len(capture.skipped)} bad packet(s), first #{capture.skipped[0][0]}: {capture.skipped[0][1]}")
    if not capture.datagrams:
        raise ReplayError(os.EX_DATAERR, f"{args.trace}: no IPv4/UDP datagrams to port {port} among its "
                                         f"{capture.packets} packets (is --port right?)")
    key = _key(args)
    message = b"heartbeat" if args.message is None else args.message.encode("utf-8", "surrogateescape")
    try:
        senders = heartbeat_senders(capture.datagrams, key=key, legacy_message=message)
    except ValueError as exc:
        raise ReplayError(os.EX_USAGE if key is None else os.EX_DATAERR, f"{args.trace}: {exc}") from None
    master = args.master
    datagrams = capture.datagrams
    if master is None and key is None:
        if len(senders) > 1:
            listed = ", ".join(f"{s} ({n})" for s, n in senders.most_common())
            raise ReplayError(os.EX_USAGE, f"{args.trace}: heartbeats from several senders: {listed}; "
                                           "say which is the master with --master ADDRESS")
        master = next(iter(senders))
    elif master is not None and key is not None:
        datagrams = [d for d in datagrams if d[2] == master]
    if master is not None and master not in senders:
        raise ReplayError(os.EX_USAGE, f"{args.trace}: no heartbeats from --master {master} "
                                       f"(senders: {', '.join(sorted(senders)) or 'none'})")
    addresses = tuple(args.address) if args.address else (PLACEHOLDER_ADDRESS,)
    if not args.address:
        notes.append(f"the master's public addresses are not in a capture; {PLACEHOLDER_ADDRESS} stands for "
                     "them (--address names them)")
    settings = DetectorSettings(
        addresses=addresses,
        timing=_timing(Timing(), overrides),
        master=master,
        legacy_message=message,
        peer=master or "master",
    )
    setup = Setup(settings, capture.start, key=key)
    return Loaded(capture.format, setup, None, datagrams, capture.end, exact_possible=False, notes=notes)


def _model(args: argparse.Namespace) -> ActionModel:
    return ActionModel(
        probe_answers=args.probe_answers,
        probe_latency=args.probe_latency,
        acquire_latency=args.action_latency,
        release_latency=args.action_latency,
    )


def replay_loaded(loaded: Loaded, args: argparse.Namespace, *, timing: Timing | None = None) -> ReplayResult:
    """Exact replay when the input allows it and nothing else was asked; what-if otherwise or with ``timing``."""
    if timing is None and loaded.exact_possible and not args.what_if:
        result = replay_exact(loaded.setup, loaded.events, outage=args.outage)
    else:
        setup = loaded.setup if timing is None else loaded.setup.with_timing(timing)
        result = replay_what_if(setup, loaded.arrivals, model=_model(args), end=loaded.end, lost=loaded.lost,
                                outage=args.outage)
    result.notes[:0] = loaded.notes
    return result


# --- replay --------------------------------------------------------------------------


def run_replay(args: argparse.Namespace) -> int:
    try:
        loaded = load(args)
        result = replay_loaded(loaded, args)
    except ReplayError as exc:
        print(f"failoverctl: {exc}", file=sys.stderr)
        return exc.status
    if args.json:
        data = result.to_json()
        data["input"] = {"file": str(args.trace), "kind": loaded.kind}
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(render_replay(result, source=str(args.trace), kind=loaded.kind, model=_model(args))))
    if result.divergences:
        d = result.divergences[0]
        print(f"failoverctl: warning: {len(result.divergences)} datagram verdict(s) differ from the recording "
              f"(first at +{d.time - result.start:.3f} s: recorded {d.recorded}, replayed {d.replayed}); "
              "this failoverd's detector is not the one that recorded the trace", file=sys.stderr)
    return os.EX_OK


# --- sweep ----------------------------------------------------------------------------


def sweep(args: argparse.Namespace) -> tuple[Loaded, list[SweepRow], list[str]]:
    """One what-if replay per fail-misses value (the rows: :class:`~failoverd.analysis.report.SweepRow`)."""
    base = load(args)
    suspect = base.setup.timing.suspect_misses
    low, high = args.misses or (suspect + 1, max(suspect + 1, 10))
    rows: list[SweepRow] = []
    skipped: list[str] = []
    for misses in range(low, high + 1):
        try:
            timing = dataclasses.replace(base.setup.timing, fail_misses=misses)
        except TimingError as exc:
            skipped.append(f"fail misses {misses}: {exc}")
            continue
        rows.append(SweepRow.from_result(timing, replay_loaded(base, args, timing=timing)))
    if not rows:
        raise ReplayError(os.EX_USAGE, "no fail-misses value in the range gives a usable timing: " + "; ".join(skipped))
    return base, rows, skipped


def run_sweep(args: argparse.Namespace) -> int:
    try:
        loaded, rows, skipped = sweep(args)
    except ReplayError as exc:
        print(f"failoverctl: {exc}", file=sys.stderr)
        return exc.status
    if args.plot is not None:
        from failoverd.analysis.sweepplot import plot_sweep

        try:
            plot_sweep(rows, args.plot, f"{args.trace.name}: detection time vs false failovers")
        except OSError as exc:
            print(f"failoverctl: cannot write {args.plot}: {exc.strerror or exc}", file=sys.stderr)
            return os.EX_CANTCREAT
    if args.json:
        print(json.dumps({"input": {"file": str(args.trace), "kind": loaded.kind},
                          "interval": loaded.setup.timing.interval,
                          "rows": [r.to_json() for r in rows], "skipped": skipped, "notes": loaded.notes}, indent=2))
        return os.EX_OK
    t = loaded.setup.timing
    print(f"{args.trace}: what-if sweep of the failure timeout; interval {t.interval:g} s, "
          f"suspect after {t.suspect_after:g} s")
    for n in loaded.notes:
        print(f"note: {n}")
    for s in skipped:
        print(f"skipped: {s}")
    print("\n".join(render_sweep(rows)))
    print("detection: seconds from the last heartbeat to the takeover decision, over real failovers only")
    if args.plot is not None:
        print(f"plot written to {args.plot}")
    return os.EX_OK


# --- standalone use (before/without failoverctl's registration) --------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="failoverctl")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=ArgumentParser)
    common = argparse.ArgumentParser(add_help=False)
    add_replay(commands, common)
    add_sweep(commands, common)
    args = parse_or_exit(parser, argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

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
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from failoverd.analysis.replay import DEFAULT_OUTAGE, ActionModel
from failoverd.analysis.replayrun import ReplayError, Request, load, replay_loaded, sweep
from failoverd.analysis.report import render_replay, render_sweep
from failoverd.cli.argparser import ArgumentParser, parse_or_exit

# The same checks as the daemons' own options, so a what-if parses as failoverd would.
from failoverd.cli.options import count_at_least, seconds, seconds_or_zero
from failoverd.core.addresses import AddressError, Triplet, parse_ip, parse_ipv6, parse_triplet

_TIMING_OPTIONS = ("interval", "suspect_misses", "fail_misses", "allowance", "probe_count", "probe_spacing")


# --- options ----------------------------------------------------------------------


def _triplet(text: str) -> Triplet:
    try:
        return parse_triplet(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sender(text: str) -> str:
    """The master's private address: IPv4, or IPv6 with or without a scope (a pcap names no interface)."""
    try:
        if ":" in text and "%" not in text:
            return str(parse_ipv6(text))
        return str(parse_ip(text, scoped=True))
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
    capture.add_argument("--master", metavar="ADDRESS", type=_sender,
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
                       help="how long acquiring or releasing addresses takes, and each answer of the "
                            "etcd witness in a witness-mode trace (default 0)")
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


# --- the options, as a request ------------------------------------------------------


def _timing_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _TIMING_OPTIONS if getattr(args, name) is not None}


def _request(args: argparse.Namespace) -> Request:
    return Request(
        trace=args.trace,
        read_key=lambda: _key(args),
        skip_bad=args.skip_bad,
        master=args.master,
        address=tuple(args.address) if args.address else None,
        port=args.port,
        message=args.message,
        timing=_timing_overrides(args),
    )


def _key(args: argparse.Namespace) -> bytes | None:
    if args.key_file is None:
        return None
    from failoverd.system.keyfile import KeyFileError, read_key

    try:
        return read_key(args.key_file)
    except KeyFileError as exc:
        raise ReplayError(os.EX_CONFIG, str(exc)) from None


def _model(args: argparse.Namespace) -> ActionModel:
    return ActionModel(
        probe_answers=args.probe_answers,
        probe_latency=args.probe_latency,
        acquire_latency=args.action_latency,
        release_latency=args.action_latency,
        witness_latency=args.action_latency,
    )


# --- replay --------------------------------------------------------------------------


def run_replay(args: argparse.Namespace) -> int:
    try:
        loaded = load(_request(args))
        result = replay_loaded(loaded, what_if=args.what_if, model=_model(args), outage=args.outage)
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


def run_sweep(args: argparse.Namespace) -> int:
    try:
        loaded = load(_request(args))
        rows, skipped = sweep(loaded, args.misses, model=_model(args), outage=args.outage)
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

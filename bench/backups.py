#!/usr/bin/env python3
"""Several backups on the namespace lab: master death -> VIP up, with one backup, with two, and with
the higher of two dead too (spec/backups.md, issue 13).

    sudo .venv/bin/python bench/backups.py [--runs 5] [--intervals 0.2 1] [--cases one two lower] [--markdown]

One three-host lab (``Lab(backups=2)``) per heartbeat interval; every daemon authenticated, the
master managing the VIP. The cases, each a pair of its own (its own work directory and key):

``one``
    heartbeatd and one failoverd on ``backup`` (a plain pair, as bench/failover_timing.py);
    ``backup2`` runs nothing.
``two``
    heartbeatd ``--backups 2`` and failoverd on ``backup`` (``--priority 200``) and ``backup2``
    (``--priority 100``), each the other's ``--peer ADDR=PRIORITY``: the higher takes the VIP
    (announcing first, and waiting for the lower's acknowledgement), the lower must not.
``lower``
    as ``two``, but ``backup`` dies first (``Lab.kill_host``) and the master only once the lower
    backup has found it silent: the lower takes the VIP after its rank delay,
    ``rank x (fail_after + probe duration + 2 x interval)`` later than the higher would have.

Per run: start the daemons, wait until the master holds the VIP and every backup is monitoring,
let them settle; kill the master's host (every process SIGKILLed, links down) and sample the VIP
through netlink in every namespace (about every millisecond each) until the expected backup holds
it and for a few intervals more. Measured: the kill -> the first sample showing the VIP on the
expected backup; counted: runs in which any other backup held it, or two live hosts at once (both
should be 0; the dead master keeps the VIP on its down links, as a real dead host does). Then every
daemon is stopped, the dead hosts come back and their addresses are cleared (what a reboot does),
for the next run.

While the VIP is sampled, the script waits on the sampler's own readings rather than asking ``ip``
every few milliseconds (a process per poll would load the machine in the milliseconds measured).

Medians and min/max are printed, and for ``lower`` its median cost over ``two``; ``--markdown``
prints the table for docs/benchmarks.md. A measurement, not a test: it asserts nothing, and the
numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from failoverd.lab.lab import Lab
from failoverd.lab.pair import FailoverPair, VipSampler

CASES: dict[str, str] = {
    "one": "one backup",
    "two": "two backups, the higher takes",
    "lower": "two backups, the higher dead: the lower takes",
}
"""Each case and what its row says."""
BACKUPS_OF: dict[str, tuple[str, ...]] = {"one": ("backup",), "two": ("backup", "backup2"),
                                         "lower": ("backup", "backup2")}
TAKER: dict[str, str] = {"one": "backup", "two": "backup", "lower": "backup2"}
"""The backup that must take the VIP in each case."""
SETTLE_INTERVALS = 10
"""Heartbeat intervals the daemons run before a death (the backups' handshake is one round trip)."""
OBSERVE_INTERVALS = 6
"""Intervals watched after the taker holds, long enough for a wrong rank delay to show."""


@dataclass
class Series:
    case: str
    interval: float
    takeover: list[float] = field(default_factory=list)
    """Seconds from the master's death to the VIP on the taker, one per run."""
    wrong: int = 0
    """Runs in which a backup other than the taker held the VIP."""
    overlaps: int = 0
    """Runs in which two live hosts held the VIP at once."""
    samples: list[int] = field(default_factory=list)


def sampled(sampler: VipSampler, host: str) -> bool | None:
    """Whether the host held the VIP at the sampler's latest reading (None before the first)."""
    readings = sampler.readings[host]
    return readings[-1][1] if readings else None


def settle(pair: FailoverPair) -> None:
    pair.wait_until(lambda: pair.holds("master"), 30, "the master holds the VIP")
    time.sleep(max(1.0, SETTLE_INTERVALS * pair.interval))
    for host in pair.backup_hosts:
        pair.wait_until(lambda host=host: pair.status(host)["state"] == "monitoring", 10,
                        f"{host} is monitoring")


def one_run(pair: FailoverPair, series: Series, run: int) -> None:
    lab = pair.lab
    taker = TAKER[series.case]
    dead = ["master"]
    pair.start_master()
    pair.start_backups()
    settle(pair)
    if series.case == "lower":
        lab.kill_host("backup")
        dead.append("backup")
        # The lower backup finds the higher silent (its failure timeout, then some), while the
        # master keeps it monitoring.
        time.sleep(max(1.0, 2 * SETTLE_INTERVALS * pair.interval))
        pair.wait_until(lambda: pair.status(taker)["state"] == "monitoring", 10, f"{taker} is monitoring")

    with VipSampler(lab, pair.vip_triplet, limit=60, hosts=("master", *pair.backup_hosts)) as sampler:
        killed = time.time()
        lab.kill_host("master")
        pair.wait_until(lambda: sampled(sampler, taker), 30, f"{taker} holds the VIP", poll=0.005)
        time.sleep(OBSERVE_INTERVALS * pair.interval + 0.2)
    up = sampler.first(lambda s: taker in s.holders, after=killed)
    assert up is not None
    series.takeover.append(up - killed)
    others = [host for host in pair.backup_hosts if host != taker and sampler.ever(host, after=killed)]
    series.wrong += bool(others)
    # A killed host keeps its addresses on its down links (until it reboots): only the live count.
    two = any(len(s.holders - set(dead)) > 1 for s in sampler.samples if s.at >= killed)
    series.overlaps += two
    series.samples.append(sampler.count)
    print(f"  {series.case:5} run {run}: master death -> VIP up on {taker} {series.takeover[-1] * 1000:8.1f} ms"
          + (f"; ALSO HELD BY {', '.join(others)}" if others else "")
          + ("; TWO LIVE HOLDERS AT ONCE" if two else "")
          + f" ({sampler.count} samples)", flush=True)
    reset(pair, dead)


def reset(pair: FailoverPair, dead: list[str]) -> None:
    """Stop every daemon (a stopping failoverd releases what it holds); the dead hosts reboot."""
    for host in pair.backup_hosts:
        pair.stop(host)
    pair.stop("master")
    for host in dead:
        pair.reboot_addresses(host)
        pair.lab.revive_host(host)
    pair.wait_until(lambda: not pair.holders(), 10, "no host holds the VIP")


def measure(interval: float, runs: int, seed: int, cases: list[str]) -> dict[str, Series]:
    results = {case: Series(case, interval) for case in cases}
    with tempfile.TemporaryDirectory(prefix="failoverd-bench-") as workdir, Lab(seed=seed, backups=2) as lab:
        print(f"interval {interval:g} s, lab {lab.lab_id}", flush=True)
        for case in cases:
            pair = FailoverPair(lab, Path(workdir) / case, interval=interval, backups=BACKUPS_OF[case])
            for run in range(1, runs + 1):
                one_run(pair, results[case], run)
    return results


def _stats(values: list[float], unit: float = 1000.0) -> str:
    return (f"{statistics.median(values) * unit:.1f} (min {min(values) * unit:.1f}, "
            f"max {max(values) * unit:.1f})")


def rank_cost(cells: dict[str, Series]) -> float | None:
    """The lower backup's median detection less the higher's (the measured rank delay), in seconds."""
    if "lower" in cells and "two" in cells and cells["lower"].takeover and cells["two"].takeover:
        return statistics.median(cells["lower"].takeover) - statistics.median(cells["two"].takeover)
    return None


def report(results: list[dict[str, Series]], markdown: bool) -> str:
    lines = []
    if markdown:
        lines += ["| interval | case | runs | master death -> VIP up, ms: median (min, max) "
                  "| runs with another backup holding | runs with two holders |",
                  "|---|---|---|---|---|---|"]
        for cells in results:
            for s in cells.values():
                lines.append(f"| {s.interval:g} s | {CASES[s.case]} | {len(s.takeover)} | {_stats(s.takeover)} "
                             f"| {s.wrong} | {s.overlaps} |")
        return "\n".join(lines)
    for cells in results:
        for s in cells.values():
            lines.append(f"interval {s.interval:g} s, {CASES[s.case]}, {len(s.takeover)} runs: master death -> "
                         f"VIP up on {TAKER[s.case]}: median {_stats(s.takeover)} ms; another backup held it "
                         f"in {s.wrong}, two holders in {s.overlaps}")
        cost = rank_cost(cells)
        if cost is not None:
            lines.append(f"interval {next(iter(cells.values())).interval:g} s: the lower backup's rank delay "
                         f"(median lower - median two): {cost * 1000:.1f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.2, 1.0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if any(interval <= 0 for interval in args.intervals):
        parser.error("--intervals must be positive")
    cases = [case for case in CASES if case in args.cases]  # in table order, each once
    results = [measure(interval, args.runs, args.seed, cases) for interval in args.intervals]
    print()
    print(report(results, markdown=False))
    if args.markdown:
        print()
        print(report(results, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Failover timing on the namespace lab: host death -> VIP up on the backup, and failback overlap/gap.

    sudo .venv/bin/python bench/failover_timing.py [--runs 5] [--intervals 1 0.1] [--markdown]

For each heartbeat interval, one lab; per run:

1. heartbeatd (authenticated, ``--manage`` of the VIP: managed failback) on the master and
   failoverd on the backup; wait until the master holds the VIP and the backup has heard it for
   a while;
2. host death: every process in the master's namespace SIGKILLed and its links set down
   (``Lab.kill_host``); measured: the moment of the kill -> the first netlink sample showing the
   VIP on the backup;
3. failback: the master "reboots" (its VIP is gone, links up) and heartbeatd starts again;
   measured through netlink in both namespaces (about every millisecond each): how long both
   held the VIP, and how long neither did between the backup's release and the master's add;
4. both daemons stopped (SIGTERM) before the next run.

While the VIP is being sampled, the script waits on the sampler's own readings
rather than asking ``ip`` every few milliseconds: a process spawned per poll
would load the two-core lab machine in the very milliseconds being measured.

Medians and min/max are printed; ``--markdown`` prints the table for docs/benchmarks.md. This is a
measurement, not a test: it asserts nothing, and the numbers depend on the machine.
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


@dataclass
class Series:
    interval: float
    takeover: list[float] = field(default_factory=list)
    overlap: list[float] = field(default_factory=list)
    gap: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)


def sampled(sampler: VipSampler, host: str) -> bool | None:
    """Whether the host held the VIP at the sampler's latest reading (None before the first)."""
    readings = sampler.readings[host]
    return readings[-1][1] if readings else None


def one_run(pair: FailoverPair, series: Series, run: int) -> None:
    lab = pair.lab
    pair.start_master()
    pair.start_backup()
    pair.wait_until(lambda: pair.holds("master"), 30, "the master holds the VIP")
    # A settled backup: heard the master for several intervals.
    time.sleep(max(1.0, 5 * pair.interval))
    pair.wait_until(lambda: pair.status("backup")["state"] == "monitoring", 10, "the backup is monitoring")

    with VipSampler(lab, pair.vip_triplet, limit=60) as sampler:
        killed = time.time()
        lab.kill_host("master")
        pair.wait_until(lambda: sampled(sampler, "backup"), 30, "the backup holds the VIP", poll=0.005)
        time.sleep(0.05)
    up = sampler.first(lambda s: s.backup, after=killed)
    assert up is not None
    series.takeover.append(up - killed)
    pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 10, "the backup is failed_over")

    pair.reboot_master_addresses()
    with VipSampler(lab, pair.vip_triplet, limit=60) as sampler:
        lab.revive_host("master")
        started = time.time()
        pair.start_master()
        pair.wait_until(lambda: sampled(sampler, "master") and sampled(sampler, "backup") is False, 30,
                        "the master holds the VIP and the backup released it", poll=0.005)
        time.sleep(0.1)
    series.overlap.append(sampler.overlap(after=started))
    series.gap.append(sampler.gap(after=started))
    series.samples.append(sampler.count)
    print(f"  run {run}: host death -> VIP up {series.takeover[-1] * 1000:8.1f} ms; failback overlap "
          f"{series.overlap[-1] * 1000:6.1f} ms, gap {series.gap[-1] * 1000:6.1f} ms "
          f"({sampler.count} samples)", flush=True)
    pair.stop("backup")
    pair.stop("master")


def measure(interval: float, runs: int, seed: int) -> Series:
    series = Series(interval)
    with tempfile.TemporaryDirectory(prefix="failoverd-bench-") as workdir, Lab(seed=seed) as lab:
        pair = FailoverPair(lab, Path(workdir), interval=interval)
        print(f"interval {interval:g} s, lab {lab.lab_id}", flush=True)
        for run in range(1, runs + 1):
            one_run(pair, series, run)
    return series


def _stats(values: list[float], unit: float = 1000.0) -> str:
    return (f"{statistics.median(values) * unit:.1f} (min {min(values) * unit:.1f}, "
            f"max {max(values) * unit:.1f})")


def report(all_series: list[Series], markdown: bool) -> None:
    if markdown:
        print("| interval | runs | host death -> VIP up on backup, ms: median (min, max) "
              "| failback both hold, ms | failback neither holds, ms |")
        print("|---|---|---|---|---|")
        for s in all_series:
            print(f"| {s.interval:g} s | {len(s.takeover)} | {_stats(s.takeover)} | {_stats(s.overlap)} "
                  f"| {_stats(s.gap)} |")
        return
    for s in all_series:
        print(f"interval {s.interval:g} s, {len(s.takeover)} runs:")
        print(f"  host death -> VIP up on the backup: median {_stats(s.takeover)} ms")
        print(f"  failback, both hold:    median {_stats(s.overlap)} ms")
        print(f"  failback, neither holds: median {_stats(s.gap)} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    results = [measure(interval, args.runs, args.seed) for interval in args.intervals]
    print()
    report(results, markdown=False)
    if args.markdown:
        print()
        report(results, markdown=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""How much latency the lab's user-space wire adds: ping RTT through it, against loopback.

    sudo .venv/bin/python bench/lab_latency.py [--count N] [--interval S] [--runs R]

Builds one lab, pings the master's public address from the client (every echo crosses the wire
twice: request and reply) and the client's own loopback (no wire), and prints min/median/p95/max
of both and the median added per crossing. A measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from failoverd.lab import Lab


def quantiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (f"min {ordered[0] * 1e3:7.3f}  median {statistics.median(ordered) * 1e3:7.3f}  "
            f"p95 {p95 * 1e3:7.3f}  max {ordered[-1] * 1e3:7.3f} ms  (n={len(ordered)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200, help="echoes per run")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between echoes")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    wire: list[float] = []
    loopback: list[float] = []
    with Lab(seed=1) as lab:
        target = lab.address("master")
        lab.ping("client", target, count=2, interval=0.05)  # ARP resolved before measuring
        for run in range(args.runs):
            through = lab.ping("client", target, count=args.count, interval=args.interval, wait=1.0)
            local = lab.ping("client", "127.0.0.1", count=args.count, interval=args.interval, wait=1.0)
            wire += through.rtts
            loopback += local.rtts
            print(f"run {run + 1}: through the wire {through.summary()}")
    if not wire or not loopback:
        print("no replies: nothing to report", file=sys.stderr)
        return 1
    print(f"through the wire  {quantiles(wire)}")
    print(f"loopback          {quantiles(loopback)}")
    added = (statistics.median(wire) - statistics.median(loopback)) / 2
    print(f"added by the emulator per crossing (median): {added * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

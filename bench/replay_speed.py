"""Heartbeats replayed per second: a day of 10 Hz legacy heartbeats (864,000).

    .venv/bin/python bench/replay_speed.py [--count N] [--profile]

Generates, in a temporary directory, the same day twice — a pcap of legacy
datagrams (Ethernet/IPv4/UDP, as tcpdump writes) and a native trace written
through TraceWriter — then times reading + replaying each, the way
``failoverctl replay`` does it (pcap: what-if; trace: exact). The target on the
project's 2-core machines is at most 5 s for each. ``--profile`` prints the
top of a cProfile of each replay instead of only the times.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

import dpkt

from failoverd.analysis.pcapimport import read_capture
from failoverd.analysis.replay import Setup, replay_exact, replay_what_if
from failoverd.analysis.trace import TraceHeader, read_trace
from failoverd.analysis.tracewriter import TraceWriter
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import Detector
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing

MASTER = "10.0.0.1"
ADDRESS = parse_triplet("eth0:192.0.2.10/24")
TIMING = Timing(interval=0.1)
TARGET_SECONDS = 5.0


def heartbeat_times(count: int) -> list[float]:
    rng = random.Random(1)
    start = 1_790_000_000.0
    return [start + i * 0.1 + rng.uniform(0, 0.004) for i in range(1, count + 1)]


def legacy_frame() -> bytes:
    udp = dpkt.udp.UDP(sport=40000, dport=1694, data=b"heartbeat")
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=socket.inet_aton(MASTER), dst=socket.inet_aton("10.0.0.2"), p=17, data=udp)
    ip.len = len(ip)
    frame = b"\x04" * 6 + b"\x02" * 6 + struct.pack(">H", 0x0800) + bytes(ip)
    return frame + b"\x00" * (60 - len(frame))


def write_pcap(path: Path, times: list[float]) -> None:
    frame = legacy_frame()
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f)
        for t in times:
            writer.writepkt(frame, ts=t)


def write_trace(path: Path, times: list[float]) -> None:
    header = TraceHeader(mode="legacy", settings=DetectorSettings((ADDRESS,), timing=TIMING, master=MASTER), start=times[0] - 0.1)
    det = Detector(DetectorSettings((ADDRESS,), TIMING, master=MASTER), header.start)
    with TraceWriter(path, header, max_bytes=1 << 30, max_pending=len(times) + 10, wall_clock=None) as writer:
        for t in times:
            det.receive_datagram(t, b"heartbeat", MASTER, "eth1")
            writer.datagram(t, b"heartbeat", MASTER, "eth1", det.last_verdict)
        writer.close(times[-1])
    if writer.dropped:
        raise SystemExit(f"the trace writer dropped {writer.dropped} events; the benchmark needs them all")


def replay_pcap(path: Path) -> int:
    capture = read_capture(path)
    setup = Setup(DetectorSettings((ADDRESS,), TIMING, master=MASTER), capture.start)
    return replay_what_if(setup, capture.datagrams, end=capture.end).accepted


def replay_trace(path: Path) -> int:
    trace = read_trace(path)
    return replay_exact(Setup.from_header(trace.header, None), trace.events).accepted


def measure(name: str, run, path: Path, count: int, profile: bool) -> float:  # type: ignore[no-untyped-def]
    profiler = cProfile.Profile() if profile else None
    began, began_cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    accepted = run(path)
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - began_cpu
    if accepted != count:
        raise SystemExit(f"{name}: {accepted} heartbeats accepted, expected {count}")
    verdict = "ok" if elapsed <= TARGET_SECONDS else f"SLOWER than the {TARGET_SECONDS:g} s target"
    # CPU time next to wall time: on a shared machine the difference is other load.
    print(f"{name:<15} {path.stat().st_size / 1e6:6.1f} MB  {elapsed:6.2f} s ({cpu:5.2f} s CPU)  "
          f"{count / elapsed:10,.0f} heartbeats/s  {verdict}")
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(12)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=864_000, help="heartbeats (default: a day at 10 Hz)")
    parser.add_argument("--profile", action="store_true", help="profile each replay")
    args = parser.parse_args(argv)
    times = heartbeat_times(args.count)
    with tempfile.TemporaryDirectory(prefix="failoverd-bench-") as tmp:
        pcap, trace = Path(tmp) / "day.pcap", Path(tmp) / "day.trace"
        began = time.perf_counter()
        write_pcap(pcap, times)
        write_trace(trace, times)
        print(f"generated {args.count:,} heartbeats as pcap and trace in {time.perf_counter() - began:.1f} s")
        slowest = max(
            measure("pcap (what-if)", replay_pcap, pcap, args.count, args.profile),
            measure("trace (exact)", replay_trace, trace, args.count, args.profile),
        )
    return 0 if slowest <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())

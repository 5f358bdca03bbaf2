"""How many heartbeats per second the detector core processes on this machine.

Measures decode + verify + replay check + apply for valid authenticated
heartbeats while all is well (the common case: no state transition), legacy
heartbeats, and rejected forgeries, on one core. Prints figures; asserts
nothing. Run:  .venv/bin/python bench/core_throughput.py [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from failoverd.core import wire
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import Detector
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing

KEY = b"benchmark-key-0123456789abcdef"
N = 200_000


def _frames(n: int, key: bytes = KEY, spacing: float = 0.001) -> list[bytes]:
    """The handshake, then heartbeats acknowledging the detector's first status
    (epoch 1, seq 1, sent at 0): within max_delay, so each proves its age."""
    sealer = wire.Sealer(key, wire.ROLE_MASTER, 1, 0.01, 0.0)
    return [sealer.seal(0.0, holds=True)] + [
        sealer.seal(i * spacing, holds=True, ack_epoch=1, ack_seq=1) for i in range(1, n)
    ]


def _run(detector: Detector, frames: list[bytes], spacing: float = 0.001) -> float:
    receive = detector.receive_datagram
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        receive(i * spacing, frame, "10.0.1.1", "priv0")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="print where the time goes")
    parser.add_argument("-n", type=int, default=N)
    args = parser.parse_args()
    vip = [parse_triplet("pub0:10.0.2.100/24")]
    timing = Timing(interval=0.001 * 10, fail_misses=30000, probe_count=1, probe_spacing=0.001)

    # A flood: heartbeats 1 ms apart at a 10 ms interval. Status replies are
    # bounded to one per half interval, so this is decode + verify + apply.
    frames = _frames(args.n)
    d = Detector(DetectorSettings(vip, timing), 0.0, key=KEY)
    elapsed = _run(d, frames)
    assert d.counters.accepted == args.n - 1 and d.counters.transitions == 0
    print(f"authenticated, accepted : {args.n / elapsed:>10,.0f} heartbeats/s  ({elapsed / args.n * 1e6:.2f} µs each)")

    # At the protocol's rate every heartbeat is answered with a signed status.
    frames = _frames(args.n, spacing=0.01)
    d = Detector(DetectorSettings(vip, timing), 0.0, key=KEY)
    elapsed = _run(d, frames, spacing=0.01)
    print(f"  ... each one answered : {args.n / elapsed:>10,.0f} heartbeats/s  ({elapsed / args.n * 1e6:.2f} µs each)")

    legacy = Detector(DetectorSettings(vip, timing, master="10.0.1.1"), 0.0)
    elapsed = _run(legacy, [b"heartbeat"] * args.n)
    print(f"legacy, accepted        : {args.n / elapsed:>10,.0f} heartbeats/s  ({elapsed / args.n * 1e6:.2f} µs each)")

    forged = _frames(args.n, key=b"some-other-key-entirely!")
    d = Detector(DetectorSettings(vip, timing), 0.0, key=KEY)
    elapsed = _run(d, forged)
    assert d.counters.rejected == {"mac": args.n}
    print(f"authenticated, forged   : {args.n / elapsed:>10,.0f} datagrams/s  ({elapsed / args.n * 1e6:.2f} µs each)")

    if args.profile:
        d = Detector(DetectorSettings(vip, timing), 0.0, key=KEY)
        profiler = cProfile.Profile()
        profiler.enable()
        _run(d, frames)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()

"""``failoverd-lab demo``: the master dies, the backup takes over, the master returns, live.

Builds a lab, runs the real pair in it through the end-to-end harness
(:mod:`failoverd.lab.pair`), kills the master, brings it back and prints the
timeline of both changes as the logs, netlink and a pinging client saw them.

Resource handling: the lab (and with it every daemon) is torn down on every
way out; the daemons' logs are in a temporary directory removed at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from failoverd.lab.lab import Lab
from failoverd.lab.pair import FailoverPair, FirstAnswer, PairError, VipSampler


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(interval: float = 0.1, seed: int | None = None, keep_workdir: bool = False) -> int:
    """Build a lab, fail the master over to the backup and back, print the timeline, tear down."""
    workdir = Path(tempfile.mkdtemp(prefix="failoverd-demo-"))
    try:
        return _demo(workdir, interval, seed)
    finally:
        if keep_workdir:
            _say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _demo(workdir: Path, interval: float, seed: int | None) -> int:
    _say(f"building the lab (namespaces master, backup, client; a private and a public LAN) in {workdir}")
    with Lab(seed=seed) as lab:
        pair = FailoverPair(lab, workdir, interval=interval)
        _say(f"lab {lab.lab_id}: master {lab.address('master', 'priv')} (private), "
             f"backup {lab.address('backup', 'priv')}, virtual IP {pair.vip}")
        pair.start_master()
        pair.start_backup()
        pair.wait_until(lambda: pair.holds("master"), 10, "the master holds the virtual IP")
        _say(f"heartbeatd holds {pair.vip} (managed failback); failoverd is {pair.status('backup')['state']}; "
             f"heartbeats every {interval:g} s, authenticated")
        answer = FirstAnswer(lab, pair.vip)
        answer.wait(5)
        answer.close()
        _say(f"client reaches {pair.vip}: {'yes' if answer.at else 'NO'}")

        _say("\n== the master dies (every process SIGKILLed, links down) ==")
        with VipSampler(lab, pair.vip_triplet) as sampler:
            killed_at = time.time()
            lab.kill_host("master")
            client = FirstAnswer(lab, pair.vip)
            up_at = pair.wait_until(lambda: pair.holds("backup"), 30, "the backup holds the virtual IP")
            client.wait(10)
            client.close()
            time.sleep(0.3)
        detected = pair.log_time("backup", "-> acquiring", after=killed_at)
        suspected = pair.log_time("backup", "monitoring -> suspect", after=killed_at)
        probed = pair.log_time("backup", "ARP probe for", after=killed_at)
        up_sampled = sampler.first(lambda s: s.backup, after=killed_at) or up_at
        _timeline(killed_at, [
            ("master killed", killed_at),
            ("backup suspects the master", suspected),
            ("ARP probe of the virtual IP: silent", probed),
            ("backup declares it failed, acquires", detected),
            ("virtual IP up on the backup (netlink)", up_sampled),
            ("first client answer from the backup", client.at),
        ])

        _say("\n== the master returns (rebooted: links up, no VIP, heartbeatd restarted) ==")
        pair.reboot_master_addresses()
        with VipSampler(lab, pair.vip_triplet) as sampler:
            lab.revive_host("master")
            started_at = time.time()
            pair.start_master()
            back_at = pair.wait_until(lambda: pair.holds("master") and not pair.holds("backup"), 30,
                                      "the master holds the virtual IP again and the backup does not")
            time.sleep(0.3)
        released = sampler.first(lambda s: not s.backup, after=started_at)
        reacquired = sampler.first(lambda s: s.master, after=started_at)
        _timeline(started_at, [
            ("heartbeatd started on the master", started_at),
            ("backup released the virtual IP (netlink)", released),
            ("master added the virtual IP (netlink)", reacquired or back_at),
        ])
        overlap = sampler.overlap(after=started_at)
        gap = sampler.gap(after=started_at)
        _say(f"failback: both held the VIP for {overlap * 1000:.1f} ms, neither for {gap * 1000:.1f} ms "
             f"({sampler.count} netlink samples)")
        status = pair.stop("backup"), pair.stop("master")
        _say(f"\ndaemons stopped (exit {status[0]} and {status[1]}); tearing the lab down")
    return 0 if overlap == 0 else 1


def _timeline(origin: float, events: list[tuple[str, float | None]]) -> None:
    for label, at in events:
        when = "      —" if at is None else f"{(at - origin) * 1000:+8.1f} ms"
        _say(f"  {when}  {label}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=float, default=0.1, help="heartbeat interval in seconds (default 0.1)")
    parser.add_argument("--seed", type=int, default=None, help="the wire emulator's random seed")
    parser.add_argument("--keep", action="store_true", help="keep the daemons' logs (their directory is printed)")


def main(args: argparse.Namespace) -> int:
    """``failoverd-lab demo``: 0 when the failover and an overlap-free failback were shown."""
    try:
        return run_demo(interval=args.interval, seed=args.seed, keep_workdir=args.keep)
    except PairError as error:
        print(f"failoverd-lab demo: {error}", file=sys.stderr)
        return 1

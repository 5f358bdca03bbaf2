#!/usr/bin/env python3
"""The witness mode's benchmark row: failoverd/heartbeatd with and without the etcd witness, on one lab.

    sudo .venv/bin/python bench/witness.py [--runs 5] [--interval 0.1] [--idle-seconds 20] [--markdown]
    sudo .venv/bin/python bench/witness.py --backups 2 [--runs 2] [--interval 0.1] [--idle-seconds 30]

One lab (``Lab(wire="bridge")``, as bench/peers.py) and one real three-member etcd cluster
(failoverd/lab/etcd.py: heartbeat 50 ms, election 500 ms, data on tmpfs), the master's and the
backup's namespaces joined to the cluster's wire. Per run, each mode in turn (``witness``: both
daemons with ``--etcd-endpoints``; ``plain``: without, the same pair otherwise; the order
shuffled per run), one cycle:

1. start heartbeatd (``--key-file --manage``) on the master, wait until it holds the VIP; start
   failoverd on the backup; let it settle;
2. **idle cost**: CPU time (``/proc/PID/task/*/schedstat``, every process in both hosts'
   namespaces) of the pair over ``--idle-seconds``, as seconds per hour; in witness mode also the
   etcd members' CPU over the same window (what the witness costs the cluster) and the traffic
   between the two hosts and etcd (bytes and packets through their ports on the cluster's wire:
   renewals and lease keepalives);
3. **host death**: after a random fraction of an interval, ``Lab.kill_host("master")``; the kill ->
   the first netlink sample with the VIP on the backup;
4. **failback**: the master "reboots" (VIP gone, links up) and heartbeatd starts again; sampled
   through netlink in both namespaces: how long both held the VIP (must be 0), how long neither
   did, and heartbeatd's start -> the master holds the VIP alone;
5. both daemons stopped (SIGTERM).

``--backups 2``: the idle cost only (step 2), of a master and two backups (``Lab(backups=2)``:
heartbeatd ``--backups 2``, each failoverd with ``--priority`` and the other as ``--peer``) beside the
pair (the master and the first backup of the same lab), each with and without the witness, the four
in a shuffled order per run: CPU of the daemons' namespaces, of the three etcd members and the
traffic to etcd over ``--idle-seconds`` (at most 60). No host is killed.

Beside them, the peers' published defaults (/work/shared/reference/peers.md): vip-manager follows
Patroni's leader key, ttl 30 s (minimum 20 s): a VIP moves 20 - 30 s after a leader's death;
kube-vip's leases 15/10/2 s: about 15 s (about 5 s at 5/3/1). Neither publishes an idle cost.

This is a measurement, not a test: it asserts nothing. Every wait is bounded; the lab, the cluster
and every process in them are removed on every way out.
"""

from __future__ import annotations

import argparse
import glob
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from failoverd.lab.etcd import EtcdCluster
from failoverd.lab.lab import Lab
from failoverd.lab.pair import FailoverPair, VipSampler

MODES = ("witness", "plain")
HOSTS = ("master", "backup")
WAIT = 30.0  # seconds: a guard on every wait, never what is measured


IDLE_ONLY = (("pair", "witness"), ("pair", "plain"), ("trio", "witness"), ("trio", "plain"))
"""``--backups 2``: (who runs, mode) per configuration; trio = the master and both backups."""


@dataclass
class Series:
    mode: str
    takeover: list[float] = field(default_factory=list)
    overlap: list[float] = field(default_factory=list)
    gap: list[float] = field(default_factory=list)
    back: list[float] = field(default_factory=list)
    idle_cpu: list[float] = field(default_factory=list)
    etcd_cpu: list[float] = field(default_factory=list)
    etcd_bytes: list[float] = field(default_factory=list)
    etcd_packets: list[float] = field(default_factory=list)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of the processes, every thread included (schedstat: nanoseconds on a CPU)."""
    total = 0
    for pid in pids:
        for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
            try:
                total += int(Path(path).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that ended meanwhile
    return total / 1e9


def sampled(sampler: VipSampler, host: str) -> bool | None:
    readings = sampler.readings[host]
    return readings[-1][1] if readings else None


def idle_cost(pair: FailoverPair, cluster: EtcdCluster, series: Series, idle_seconds: float,
              hosts: tuple[str, ...]) -> None:
    """CPU of every process in the hosts' namespaces over the window, as s/h; with the witness also
    the members' CPU and the hosts' traffic to etcd."""
    lab = pair.lab
    pids = [pid for host in hosts for pid in lab.pids(host)]
    members = cluster.pids()
    ports = [f"h{host}" for host in hosts]
    before = cpu_seconds(pids), cpu_seconds(members)
    traffic = [cluster.port_counters(name) for name in ports]
    time.sleep(idle_seconds)
    series.idle_cpu.append((cpu_seconds(pids) - before[0]) / idle_seconds * 3600)
    if series.mode == "witness":
        series.etcd_cpu.append((cpu_seconds(members) - before[1]) / idle_seconds * 3600)
        after = [cluster.port_counters(name) for name in ports]
        series.etcd_bytes.append(sum(a[0] - b[0] for a, b in zip(after, traffic, strict=True)) / idle_seconds)
        series.etcd_packets.append(sum(a[1] - b[1] for a, b in zip(after, traffic, strict=True)) / idle_seconds)


def idle_cycle(pair: FailoverPair, cluster: EtcdCluster, series: Series, idle_seconds: float) -> None:
    """``--backups 2``: start the master, then its backups; once all monitor, the idle cost; stop."""
    pair.start_master()
    pair.wait_until(lambda: pair.holds("master"), WAIT, "the master holds the VIP")
    pair.start_backups()
    time.sleep(max(1.0, 10 * pair.interval))
    pair.wait_until(lambda: all(pair.status(b)["state"] == "monitoring" for b in pair.backup_hosts), 10,
                    "every backup is monitoring")
    idle_cost(pair, cluster, series, idle_seconds, ("master", *pair.backup_hosts))
    for host in (*pair.backup_hosts, "master"):
        pair.stop(host)
    extra = (f"; idle etcd: {series.etcd_bytes[-1]:.0f} B/s, {series.etcd_packets[-1]:.1f} packets/s, "
             f"members {series.etcd_cpu[-1]:.1f} CPU s/h" if series.mode == "witness" else "")
    print(f"  {len(pair.backup_hosts) + 1} hosts, {series.mode:7s}: idle daemons {series.idle_cpu[-1]:.1f} CPU s/h"
          f"{extra}", flush=True)


def measure_idle(runs: int, interval: float, idle_seconds: float, seed: int) -> dict[tuple[str, str], Series]:
    """``--backups 2``: the idle cost of the pair and of the master with two backups, on one lab."""
    rng = random.Random(seed)
    series = {config: Series(config[1]) for config in IDLE_ONLY}
    with (tempfile.TemporaryDirectory(prefix="failoverd-bench-") as workdir,
          Lab(seed=seed, wire="bridge", backups=2) as lab, EtcdCluster(members=3, peers=0) as cluster):
        for host in ("master", *lab.backup_hosts):
            cluster.attach(f"h{host}", lab.ns(host))
        etcd = ["--etcd-endpoints", ",".join(cluster.endpoints)]
        pairs = {
            (who, mode): FailoverPair(lab, Path(workdir) / f"{who}-{mode}", interval=interval,
                                      backups=("backup",) if who == "pair" else None,
                                      **({"master_args": etcd, "backup_args": etcd} if mode == "witness" else {}))
            for who, mode in IDLE_ONLY
        }
        print(f"interval {interval:g} s, idle {idle_seconds:g} s, lab {lab.lab_id} (2 backups), "
              f"etcd {cluster.lab_id}", flush=True)
        for run in range(1, runs + 1):
            order = list(IDLE_ONLY)
            rng.shuffle(order)
            print(f"run {run}:", flush=True)
            for config in order:
                idle_cycle(pairs[config], cluster, series[config], idle_seconds)
    return series


def _print_markdown(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def report_idle(series: dict[tuple[str, str], Series], interval: float, markdown: bool) -> None:
    head = ("", f"pair, witness, {interval:g} s", f"pair, plain, {interval:g} s",
            f"2 backups, witness, {interval:g} s", f"2 backups, plain, {interval:g} s")
    rows = [
        ("idle CPU of the daemons, s/h", *(_plain(series[c].idle_cpu) for c in IDLE_ONLY)),
        ("idle CPU of the 3 etcd members, s/h",
         *(_plain(series[c].etcd_cpu) if c[1] == "witness" else "–" for c in IDLE_ONLY)),
        ("idle traffic to etcd, bytes/s (packets/s)",
         *(f"{_plain(series[c].etcd_bytes, 0)} ({_plain(series[c].etcd_packets)})" if c[1] == "witness" else "–"
           for c in IDLE_ONLY)),
    ]
    if markdown:
        _print_markdown(head, rows)
        return
    for row in rows:
        print(f"{row[0]:44s} " + "  ".join(f"{h.strip()}: {v}" for h, v in zip(head[1:], row[1:], strict=True)))


def one_cycle(pair: FailoverPair, cluster: EtcdCluster, series: Series, idle_seconds: float,
              rng: random.Random) -> None:
    lab = pair.lab
    witness = series.mode == "witness"
    pair.start_master()
    pair.wait_until(lambda: pair.holds("master"), WAIT, "the master holds the VIP")
    pair.start_backup()
    time.sleep(max(1.0, 10 * pair.interval))
    pair.wait_until(lambda: pair.status("backup")["state"] == "monitoring", 10, "the backup is monitoring")

    idle_cost(pair, cluster, series, idle_seconds, HOSTS)

    with VipSampler(lab, pair.vip_triplet, limit=WAIT + 10) as sampler:
        time.sleep(rng.uniform(0, pair.interval))
        killed = time.time()
        lab.kill_host("master")
        pair.wait_until(lambda: bool(sampled(sampler, "backup")), WAIT, "the backup holds the VIP", poll=0.005)
        time.sleep(0.05)
    up = sampler.first(lambda s: s.backup, after=killed)
    assert up is not None
    series.takeover.append(up - killed)
    pair.wait_until(lambda: pair.status("backup")["state"] == "failed_over", 10, "the backup is failed_over")

    pair.reboot_master_addresses()
    with VipSampler(lab, pair.vip_triplet, limit=WAIT + 10) as sampler:
        lab.revive_host("master")
        started = time.time()
        pair.start_master()
        pair.wait_until(lambda: bool(sampled(sampler, "master")) and sampled(sampler, "backup") is False, WAIT,
                        "the master holds the VIP and the backup released it", poll=0.005)
        time.sleep(0.1)
    series.overlap.append(sampler.overlap(after=started))
    series.gap.append(sampler.gap(after=started))
    back = sampler.first(lambda s: s.master and not s.backup, after=started)
    assert back is not None
    series.back.append(back - started)
    pair.stop("backup")
    pair.stop("master")
    extra = (f"; idle etcd: {series.etcd_bytes[-1]:.0f} B/s, {series.etcd_packets[-1]:.1f} packets/s, "
             f"members {series.etcd_cpu[-1]:.1f} CPU s/h" if witness else "")
    print(f"  {series.mode:7s}: host death -> VIP up {series.takeover[-1] * 1000:7.1f} ms; failback both "
          f"{series.overlap[-1] * 1000:.1f} ms, neither {series.gap[-1] * 1000:.1f} ms, start -> master "
          f"{series.back[-1] * 1000:.0f} ms; idle pair {series.idle_cpu[-1]:.1f} CPU s/h{extra}", flush=True)


def measure(runs: int, interval: float, idle_seconds: float, seed: int) -> dict[str, Series]:
    rng = random.Random(seed)
    series = {mode: Series(mode) for mode in MODES}
    with (tempfile.TemporaryDirectory(prefix="failoverd-bench-") as workdir, Lab(seed=seed, wire="bridge") as lab,
          EtcdCluster(members=3, peers=0) as cluster):
        cluster.attach("hmaster", lab.ns("master"))
        cluster.attach("hbackup", lab.ns("backup"))
        etcd = ["--etcd-endpoints", ",".join(cluster.endpoints)]
        pairs = {
            "witness": FailoverPair(lab, Path(workdir) / "witness", interval=interval, master_args=etcd,
                                    backup_args=etcd),
            "plain": FailoverPair(lab, Path(workdir) / "plain", interval=interval),
        }
        print(f"interval {interval:g} s, lab {lab.lab_id}, etcd {cluster.lab_id}", flush=True)
        for run in range(1, runs + 1):
            order = list(MODES)
            rng.shuffle(order)
            print(f"run {run}:", flush=True)
            for mode in order:
                one_cycle(pairs[mode], cluster, series[mode], idle_seconds, rng)
    return series


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ({min(values) * 1000:.0f} – {max(values) * 1000:.0f})"


def _plain(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f} – {max(values):.{digits}f})"


def report(series: dict[str, Series], interval: float, markdown: bool) -> None:
    witness, plain = series["witness"], series["plain"]
    rows = [
        ("host death → VIP up on the backup, ms", _ms(witness.takeover), _ms(plain.takeover),
         "20 000 – 30 000 (Patroni ttl 30 s)", "≈ 15 000 (leases 15/10/2 s)"),
        ("failback: both hold, ms", _ms(witness.overlap), _ms(plain.overlap), "–", "–"),
        ("failback: neither holds, ms", _ms(witness.gap), _ms(plain.gap), "–", "–"),
        ("failback: heartbeatd start → master holds, ms", _ms(witness.back), _ms(plain.back), "–", "–"),
        ("idle CPU of the pair, s/h", _plain(witness.idle_cpu), _plain(plain.idle_cpu), "not published",
         "not published"),
        ("idle CPU of the 3 etcd members, s/h", _plain(witness.etcd_cpu), "–", "not published", "–"),
        ("idle traffic to etcd, bytes/s (packets/s)",
         f"{_plain(witness.etcd_bytes, 0)} ({_plain(witness.etcd_packets)})", "–", "not published", "–"),
    ]
    head = ("", f"witness, {interval:g} s", f"plain, {interval:g} s", "vip-manager (default)", "kube-vip (default)")
    if markdown:
        _print_markdown(head, rows)
        return
    for row in rows:
        print(f"{row[0]:48s} witness {row[1]:24s} plain {row[2]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--backups", type=int, choices=(1, 2), default=1,
                        help="2: the idle cost of a master with two backups beside the pair's (nothing killed)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.idle_seconds <= 0:
        parser.error("--runs must be at least 1 and --idle-seconds positive")
    if args.backups == 2:
        if args.idle_seconds > 60:
            parser.error("--idle-seconds must be at most 60 with --backups 2 (four configurations per run)")
        idle = measure_idle(args.runs, args.interval, args.idle_seconds, args.seed)
        print()
        report_idle(idle, args.interval, markdown=False)
        if args.markdown:
            print()
            report_idle(idle, args.interval, markdown=True)
        return 0
    series = measure(args.runs, args.interval, args.idle_seconds, args.seed)
    print()
    report(series, args.interval, markdown=False)
    if args.markdown:
        print()
        report(series, args.interval, markdown=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

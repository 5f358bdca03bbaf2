#!/usr/bin/env python3
"""failoverd/heartbeatd beside keepalived and ucarp, in one run, on one lab of kernel bridges.

    sudo .venv/bin/python bench/peers.py [--runs 6] [--intervals 1 0.1] [--idle-seconds 20]
                                         [--daemons ours keepalived ucarp] [--no-install] [--markdown]

One lab (``Lab(wire="bridge")``: the private and the public LAN are Linux bridges in the wire
namespace, so a dead host leaves its peer's carrier up and keepalived does not go FAULT). Per
interval and per run, every daemon in turn (the order shuffled per run, so the machine's load falls
on all of them alike) goes through one cycle:

1. start the master's daemon, wait until it holds the VIP; start the backup's; let it settle;
2. **idle cost** (scenario 6): CPU time (``/proc/PID/task/*/schedstat``, every process in the
   host's namespace, so keepalived's VRRP child counts) of the pair over ``--idle-seconds``, as
   seconds per hour, and the largest resident set of one process;
3. **host death** (scenario 1): after a random fraction of an interval (a random phase against the
   daemons' own cycles), the master's links set down and then ``Lab.kill_host("master")`` (every
   process SIGKILLed); measured: the links going down -> the first netlink sample with the VIP on
   the backup. Links first, because the kill is not instantaneous: keepalived's VRRP child, whose
   parent dies first, gets SIGTERM (its parent-death signal) and sends a priority-0 advert, and the
   backup then takes over in 0.6 s instead of 3 s; a dead host sends nothing;
4. **failback** (scenario 3): the master "reboots" (VIP gone, links up) and its daemon starts again;
   sampled through netlink in both namespaces (:class:`~failoverd.lab.pair.VipSampler`): how long
   both held the VIP, how long neither did, and start -> master holds again;
5. both daemons stopped (SIGTERM), the VIP removed wherever it is left.

The daemons: ours (heartbeatd ``--key-file --manage`` on the master, failoverd ``--key-file`` on the
backup, defaults otherwise); keepalived (VRRPv2 at 1 s, VRRPv3 below 1 s; unicast over the private
LAN; priorities 200/100, both ``state BACKUP``, preempting; no authentication, which VRRPv3 does not
have); ucarp (advbase 1 only: it takes whole seconds; advskew 0/100, ``--preempt``, multicast
adverts on the private LAN, the VIP added and removed on the public LAN by its up/down scripts).

Ours runs from byte-compiled modules, as an installed package does (pip compiles them at install
time): the package's ``.pyc`` files are written first, because a source checkout under
``PYTHONDONTWRITEBYTECODE`` (or a read-only one) would otherwise compile all of failoverd again at
every daemon start, some 0.1 - 0.2 s of CPU that no installed heartbeatd spends.

Missing keepalived or ucarp is installed with ``apt-get install -y`` (Debian packages; root) unless
``--no-install``; a daemon that cannot be had is left out and the table says why. Every wait is
bounded; the lab and every process in it are removed on every way out (the lab's context manager).

Scenarios 2, 4, 5 and 7 of issue 12 (link cut only, client-visible outage, false-failover matrix,
fastest setting) are not done yet. This is a measurement, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import compileall
import glob
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import failoverd
from failoverd.core.addresses import parse_triplet
from failoverd.lab.lab import Lab
from failoverd.lab.pair import FailoverPair, PairError, VipSampler

START_TIMEOUT = 30.0
TAKEOVER_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
INSTALL_TIMEOUT = 600.0
PACKAGES = {"keepalived": "keepalived", "ucarp": "ucarp"}
HOSTS = ("master", "backup")


class BenchError(RuntimeError):
    """A daemon did not reach the state the cycle waits for (the message has its log tail)."""


# --- the daemons ---------------------------------------------------------------------------------


class Daemon:
    """One failover system on the lab's master and backup: start, stop, and say whether it is settled."""

    name = ""

    def __init__(self, lab: Lab, workdir: Path, interval: float) -> None:
        self.lab = lab
        self.interval = interval
        self.workdir = workdir / self.key
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self._starts = {host: 0 for host in HOSTS}

    @property
    def key(self) -> str:
        return type(self).__name__.lower()

    def argv(self, host: str) -> list[str]:
        raise NotImplementedError

    def start(self, host: str) -> None:
        self._starts[host] += 1
        log = self.workdir / f"{host}-{self._starts[host]}.log"
        with open(log, "wb") as out:
            self.processes[host] = self.lab.popen(host, self.argv(host), stdin=subprocess.DEVNULL, stdout=out,
                                                  stderr=subprocess.STDOUT)
        self.logs[host] = log

    def running(self, host: str) -> bool:
        child = self.processes.get(host)
        return child is not None and child.poll() is None

    def stop(self, host: str) -> None:
        child = self.processes.pop(host, None)
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)

    def settled(self) -> bool:
        """Whether the backup watches a live master (for the peers: it has run a few intervals)."""
        return True

    def log_tail(self, host: str, lines: int = 15) -> str:
        path = self.logs.get(host)
        text = path.read_text(errors="replace") if path and path.exists() else ""
        return f"--- {self.name} on {host} ---\n" + "\n".join(text.splitlines()[-lines:])


class Ours(Daemon):
    name = "failoverd/heartbeatd"

    def __init__(self, lab: Lab, workdir: Path, interval: float) -> None:
        super().__init__(lab, workdir, interval)
        self.pair = FailoverPair(lab, self.workdir, interval=interval)

    def start(self, host: str) -> None:
        try:
            self.pair.start(host, wait=START_TIMEOUT)
        except PairError as error:
            raise BenchError(str(error)) from None
        self.processes[host] = self.pair.processes[host]
        self.logs[host] = self.pair.logs[host]

    def settled(self) -> bool:
        return bool(self.pair.status("backup")["state"] == "monitoring")


class Keepalived(Daemon):
    name = "keepalived"
    PRIORITY: ClassVar[dict[str, int]] = {"master": 200, "backup": 100}

    def start(self, host: str) -> None:
        # A rebooted host has a fresh /run: a SIGKILLed keepalived leaves its
        # pid files behind, and its VRRP child a zombie until init reaps it,
        # which keepalived would take for an instance still running.
        for name in (f"{host}.pid", f"{host}-vrrp.pid"):
            (self.workdir / name).unlink(missing_ok=True)
        super().start(host)

    def argv(self, host: str) -> list[str]:
        config = self.workdir / f"{host}.conf"
        peer = "backup" if host == "master" else "master"
        version = 2 if self.interval >= 1 else 3
        config.write_text(
            "global_defs {\n"
            f"    router_id fo_{host}\n"
            f"    vrrp_version {version}\n"
            "}\n"
            "vrrp_instance VI_1 {\n"
            "    state BACKUP\n"
            "    interface priv0\n"
            "    virtual_router_id 51\n"
            f"    priority {self.PRIORITY[host]}\n"
            f"    advert_int {self.interval:g}\n"
            f"    unicast_src_ip {self.lab.address(host, 'priv')}\n"
            f"    unicast_peer {{\n        {self.lab.address(peer, 'priv')}\n    }}\n"
            f"    virtual_ipaddress {{\n        {self.lab.vip}/24 dev pub0\n    }}\n"
            "}\n"
        )
        # Own pid files: two instances on one machine must not share /run/keepalived.pid.
        return [shutil.which("keepalived") or "keepalived", "--dont-fork", "--log-console", "--log-detail",
                "--vrrp", "--use-file", str(config),
                "--pid", str(self.workdir / f"{host}.pid"), "--vrrp_pid", str(self.workdir / f"{host}-vrrp.pid")]


class Ucarp(Daemon):
    name = "ucarp"
    SKEW: ClassVar[dict[str, int]] = {"master": 0, "backup": 100}

    def __init__(self, lab: Lab, workdir: Path, interval: float) -> None:
        super().__init__(lab, workdir, interval)
        for verb, name in (("add", "up"), ("del", "down")):
            script = self.workdir / f"vip-{name}.sh"
            script.write_text(f"#!/bin/sh\nexec ip addr {verb} {lab.vip}/24 dev pub0 2>/dev/null\n")
            os.chmod(script, 0o755)

    def argv(self, host: str) -> list[str]:
        return [shutil.which("ucarp") or "ucarp", "--interface=priv0", f"--srcip={self.lab.address(host, 'priv')}",
                "--vhid=1", "--pass=lab-secret", f"--addr={self.lab.vip}", "--advbase=1",
                f"--advskew={self.SKEW[host]}", "--preempt",
                f"--upscript={self.workdir / 'vip-up.sh'}", f"--downscript={self.workdir / 'vip-down.sh'}"]


DAEMONS: dict[str, type[Daemon]] = {"ours": Ours, "keepalived": Keepalived, "ucarp": Ucarp}


def supports(key: str, interval: float) -> str | None:
    """Why the daemon cannot run at ``interval`` (None: it can)."""
    if key == "ucarp" and interval != int(interval):
        return "advbase is whole seconds"
    return None


def ensure_installed(key: str, install: bool) -> str | None:
    """Make the peer's program available; None when it is, else why not."""
    if key == "ours":
        return None
    program = key
    if shutil.which(program):
        return None
    if not install:
        return f"{program} is not installed (--no-install)"
    if os.geteuid() != 0:
        return f"{program} is not installed, and installing it needs root"
    if shutil.which("apt-get") is None:
        return f"{program} is not installed, and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "install", "-y", "-qq", PACKAGES[key]],
                 ["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", PACKAGES[key]]):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=env)
        except subprocess.TimeoutExpired:
            return f"{' '.join(argv)} took longer than {INSTALL_TIMEOUT:g} s"
        if done.returncode == 0 and shutil.which(program):
            return None
    return f"apt-get install {PACKAGES[key]} failed: {(done.stderr or done.stdout).strip()[-300:]}"


# --- measuring -----------------------------------------------------------------------------------


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


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Cell:
    """What one daemon gave at one interval, one value per run."""

    takeover: list[float] = field(default_factory=list)
    overlap: list[float] = field(default_factory=list)
    gap: list[float] = field(default_factory=list)
    restart: list[float] = field(default_factory=list)
    idle_cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def holds(sampler: VipSampler, host: str) -> bool:
    readings = sampler.readings[host]
    return bool(readings) and readings[-1][1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, daemon: Daemon, poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise BenchError(f"{daemon.name}: timed out after {timeout:g} s waiting until {what}\n"
                             + "\n".join(daemon.log_tail(h) for h in HOSTS))
        for host in HOSTS:
            child = daemon.processes.get(host)
            if host == "backup" and child is not None and child.poll() is not None:
                raise BenchError(f"{daemon.name} on {host} exited ({child.returncode})\n{daemon.log_tail(host)}")
        time.sleep(poll)


def clear_vip(lab: Lab) -> None:
    for host in HOSTS:
        lab.run(host, ["ip", "addr", "del", f"{lab.vip}/24", "dev", "pub0"], check=False)


def one_cycle(lab: Lab, daemon: Daemon, cell: Cell, idle_seconds: float, rng: random.Random,
              settle: float | None = None) -> None:
    interval = daemon.interval
    triplet = parse_triplet(f"pub0:{lab.vip}/24")
    with VipSampler(lab, triplet, limit=START_TIMEOUT + 10) as sampler:
        daemon.start("master")
        wait_until(lambda: holds(sampler, "master"), START_TIMEOUT, "the master holds the VIP", daemon)
        daemon.start("backup")
        wait_until(lambda: holds(sampler, "master") and not holds(sampler, "backup"), START_TIMEOUT,
                   "only the master holds the VIP", daemon)
    # The backup has heard the master for a while (ten intervals unless told).
    time.sleep(max(2.0, 10 * interval) if settle is None else settle)
    wait_until(daemon.settled, 10, "the backup is settled", daemon, poll=0.05)

    if idle_seconds > 0:
        pids = {host: lab.pids(host) for host in HOSTS}
        before = {host: cpu_seconds(pids[host]) for host in HOSTS}
        time.sleep(idle_seconds)
        spent = sum(cpu_seconds(pids[host]) - before[host] for host in HOSTS)
        cell.idle_cpu.append(spent / idle_seconds * 3600)
        cell.rss.append(max(rss_mib(pid) for host in HOSTS for pid in pids[host]))

    with VipSampler(lab, triplet, limit=TAKEOVER_TIMEOUT + 10) as sampler:
        time.sleep(rng.uniform(0, interval))
        killed = time.time()
        lab.run("master", ["ip", "-batch", "-"], input="link set priv0 down\nlink set pub0 down\n")
        lab.kill_host("master")
        wait_until(lambda: holds(sampler, "backup"), TAKEOVER_TIMEOUT, "the backup holds the VIP", daemon)
        time.sleep(0.05)
    up = sampler.first(lambda s: s.backup, after=killed)
    assert up is not None
    cell.takeover.append(up - killed)

    lab.run("master", ["ip", "addr", "del", f"{lab.vip}/24", "dev", "pub0"], check=False)  # rebooted
    with VipSampler(lab, triplet, limit=TAKEOVER_TIMEOUT + 10) as sampler:
        lab.revive_host("master")
        started = time.time()
        daemon.start("master")
        wait_until(lambda: holds(sampler, "master") and not holds(sampler, "backup"), TAKEOVER_TIMEOUT,
                   "the master holds the VIP again and the backup released it", daemon)
        time.sleep(0.2)
    cell.overlap.append(sampler.overlap(after=started))
    cell.gap.append(sampler.gap(after=started))
    back = sampler.first(lambda s: s.master and not s.backup, after=started)
    assert back is not None
    cell.restart.append(back - started)


def byte_compile_ours() -> None:
    """Write failoverd's ``.pyc`` files, as installing the package does (see the module's docstring)."""
    compileall.compile_dir(str(Path(failoverd.__file__).parent), quiet=1)


def measure(keys: list[str], intervals: list[float], runs: int, idle_seconds: float, seed: int,
            skipped: dict[str, str], settle: float | None = None) -> dict[tuple[str, float], Cell]:
    rng = random.Random(seed)
    if "ours" in keys:
        byte_compile_ours()
    cells: dict[tuple[str, float], Cell] = {}
    with tempfile.TemporaryDirectory(prefix="failoverd-peers-") as workdir, Lab(seed=seed, wire="bridge") as lab:
        print(f"lab {lab.lab_id} (kernel bridges), VIP {lab.vip}", flush=True)
        for interval in intervals:
            present = [k for k in keys if k not in skipped and supports(k, interval) is None]
            daemons = {k: DAEMONS[k](lab, Path(workdir) / f"{interval:g}", interval) for k in present}
            for key in present:
                cells[(key, interval)] = Cell()
            for run in range(1, runs + 1):
                order = list(present)
                rng.shuffle(order)
                for key in order:
                    daemon, cell = daemons[key], cells[(key, interval)]
                    try:
                        one_cycle(lab, daemon, cell, idle_seconds, rng, settle)
                        print(f"  {interval:g} s run {run} {daemon.name:22} host death -> VIP up "
                              f"{cell.takeover[-1] * 1000:8.1f} ms; failback both {cell.overlap[-1] * 1000:6.1f} ms, "
                              f"neither {cell.gap[-1] * 1000:6.1f} ms, master holds again "
                              f"{cell.restart[-1] * 1000:7.1f} ms"
                              + (f"; idle {cell.idle_cpu[-1]:.1f} CPU s/h, RSS {cell.rss[-1]:.1f} MiB"
                                 if idle_seconds > 0 else ""), flush=True)
                    except BenchError as error:
                        cell.failures.append(str(error).splitlines()[0])
                        print(f"  {interval:g} s run {run} {daemon.name}: FAILED: {error}", flush=True)
                    finally:
                        for host in ("backup", "master"):
                            daemon.stop(host)
                        lab.revive_host("master")
                        clear_vip(lab)
    return cells


# --- the table -----------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    if not values:
        return "–"
    return (f"{statistics.median(values) * 1000:.1f} ({min(values) * 1000:.1f} – {max(values) * 1000:.1f})")


def _plain(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f} – {max(values):.{digits}f})"


def _ratio(ours: list[float], peer: list[float]) -> str:
    if not ours or not peer or statistics.median(peer) == 0:
        return "–"
    return f"{statistics.median(ours) / statistics.median(peer):.2f}×"


ROWS: list[tuple[str, str, Callable[[list[float]], str]]] = [
    ("host death → VIP up on the backup, ms", "takeover", _ms),
    ("failback, both hold, ms", "overlap", _ms),
    ("failback, neither holds, ms", "gap", _ms),
    ("master restart → master holds again, ms", "restart", _ms),
    ("idle CPU of the pair, s per hour", "idle_cpu", _plain),
    ("largest RSS of one process, MiB", "rss", _plain),
]


def report(cells: dict[tuple[str, float], Cell], keys: list[str], intervals: list[float],
           skipped: dict[str, str], markdown: bool) -> str:
    names = [DAEMONS[k].name for k in keys]
    lines = []
    if markdown:
        lines.append("| interval | measure: median (min – max) | " + " | ".join(names)
                     + " | " + " | ".join(f"ours/{n}" for k, n in zip(keys, names) if k != "ours") + " |")
        lines.append("|---" * (2 + len(keys) + len([k for k in keys if k != "ours"])) + "|")
    for interval in intervals:
        for label, attribute, show in ROWS:
            values = {}
            for key in keys:
                cell = cells.get((key, interval))
                values[key] = getattr(cell, attribute) if cell else []
            shown = []
            for key in keys:
                why = skipped.get(key) or supports(key, interval)
                shown.append(f"– ({why})" if why and not values[key] else show(values[key]))
            ratios = [_ratio(values.get("ours", []), values[k]) for k in keys if k != "ours"]
            if markdown:
                lines.append(f"| {interval:g} s | {label} | " + " | ".join(shown) + " | " + " | ".join(ratios) + " |")
            else:
                lines.append(f"{interval:g} s  {label}")
                for name, text in zip(names, shown):
                    lines.append(f"    {name:22} {text}")
                if ratios and "ours" in keys:
                    lines.append("    ratio ours/peer        " + ", ".join(
                        f"{n}: {r}" for (k, n), r in zip([(k, n) for k, n in zip(keys, names) if k != "ours"], ratios)))
        runs = {k: len(c.takeover) for (k, i), c in cells.items() if i == interval}
        failures = {DAEMONS[k].name: c.failures for (k, i), c in cells.items() if i == interval and c.failures}
        note = f"{interval:g} s: runs per daemon " + ", ".join(f"{DAEMONS[k].name} {n}" for k, n in runs.items())
        if failures:
            note += "; failed runs: " + "; ".join(f"{n}: {len(f)} ({f[0]})" for n, f in failures.items())
        lines.append(note if not markdown else f"\n{note}\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6, help="cycles per daemon and interval (default 6)")
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--idle-seconds", type=float, default=20.0,
                        help="idle window per cycle for the CPU figure; 0 leaves it out (default 20)")
    parser.add_argument("--daemons", nargs="+", choices=list(DAEMONS), default=list(DAEMONS))
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--no-install", action="store_true", help="never apt-get install a missing peer")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if any(i <= 0 for i in args.intervals):
        parser.error("--intervals must be positive")
    if args.idle_seconds < 0:
        parser.error("--idle-seconds must not be negative")
    if os.geteuid() != 0:
        print("peers.py: needs root (network namespaces)", file=sys.stderr)
        return 77
    keys = list(dict.fromkeys(args.daemons))
    skipped = {key: why for key in keys if (why := ensure_installed(key, not args.no_install)) is not None}
    for key, why in skipped.items():
        print(f"leaving out {DAEMONS[key].name}: {why}", flush=True)
    cells = measure(keys, args.intervals, args.runs, args.idle_seconds, args.seed, skipped)
    print()
    print(report(cells, keys, args.intervals, skipped, markdown=False))
    if args.markdown:
        print()
        print(report(cells, keys, args.intervals, skipped, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""failoverd/heartbeatd beside keepalived and ucarp, in one run, on one lab of kernel bridges.

    sudo .venv/bin/python bench/peers.py [--runs 6] [--intervals 1 0.1] [--scenarios 1 3 6] [--idle-seconds 20]
                                         [--hold-seconds 30] [--matrix-seconds 60]
                                         [--daemons ours keepalived ucarp] [--no-install] [--markdown]

``--scenarios`` picks issue 12's scenarios (default 1 3 6): 1 host death, 2 the master's links
cut only, 3 failback, 4 the client-visible outage, 5 the false-failover matrix, 6 idle cost, 7 each
daemon at its fastest setting. 1, 3, 4 and 6 share one cycle (below), 2 has its own, 7 runs the
cycle again at each daemon's shortest interval, 5 runs on a second lab, through the emulator.

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

**Client-visible outage** (scenario 4, in the same cycle): a UDP echo service
(``bench/outage_probe.py``) on the master and the backup, bound to the wildcard, so it answers on the
VIP exactly where the VIP is; from the host death on, the client sends it a numbered request every
10 ms; per run, the first and the last failed request (no answer within 0.2 s) after the links went
down and after the master's daemon started again, and how many failed. The rebooted master starts
its service before its daemon, as a host's boot would.

**Link cut** (scenario 2, its own cycle): start, settle, then only the master's public and private
links set down (its processes alive); the links going down -> the VIP on the backup; after five
intervals (at least 0.5 s) the links up again -> the master holds the VIP alone again, and how long
both held it meanwhile. A daemon that exits while its links are down fails the run (ucarp does).

**Fastest setting** (scenario 7): the cycle (1, 3, and 4 when chosen) with each daemon at the
shortest interval it takes, after a fault-free hold of ``--hold-seconds`` in which every takeover
is a false one (see ``FASTEST_NOTES`` for what each needs).

**False-failover matrix** (scenario 5): a lab through the emulator (``Lab(wire="emulator")``);
per impairment (30 % loss; a delay of 0 - 2 intervals), on the private LAN only or on both, every
direction, at the default timing (1 s) and at the fastest, each daemon's pair is started, settled,
impaired for ``--matrix-seconds`` and the backup's takeovers (rising edges of its VIP samples)
counted: the master is alive throughout, so each one is false. One bounded run per cell.

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

This is a measurement, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import compileall
import glob
import json
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

    def __init__(self, lab: Lab, workdir: Path, interval: float, fastest: bool = False) -> None:
        self.lab = lab
        self.interval = interval
        self.fastest = fastest
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

    def __init__(self, lab: Lab, workdir: Path, interval: float, fastest: bool = False) -> None:
        super().__init__(lab, workdir, interval, fastest)
        # At 10 ms the defaults fail the timing check (scenario 7; see FASTEST_NOTES): five
        # missed heartbeats leave the three ARP probes time to finish before the deadline.
        self.pair = FailoverPair(lab, self.workdir, interval=interval,
                                 master_args=["--backup-fail-misses", "5"] if fastest else [],
                                 backup_args=["--fail-misses", "5"] if fastest else [])

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

    def __init__(self, lab: Lab, workdir: Path, interval: float, fastest: bool = False) -> None:
        super().__init__(lab, workdir, interval, fastest)
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

# Scenario 7: the shortest interval each daemon accepts, and what it takes.
FASTEST = "fastest"
FASTEST_INTERVAL = {"ours": 0.01, "keepalived": 0.01, "ucarp": 1.0}
FASTEST_NOTES = {
    "ours": "0.01 s (its lower bound) with --fail-misses 5 on the backup (heartbeatd --backup-fail-misses 5): "
            "the defaults fail the timing check there, suspect after 12 ms + 3 ARP probes x 10 ms = 42 ms "
            ">= the 30 ms failure deadline",
    "keepalived": "advert_int 0.01 (VRRPv3 counts centiseconds)",
    "ucarp": "advbase 1 (whole seconds): its fastest is its default",
}

Setting = float | str
"""An interval in seconds, or FASTEST: each daemon at its own FASTEST_INTERVAL."""


def interval_of(key: str, setting: Setting) -> float:
    return FASTEST_INTERVAL[key] if setting == FASTEST else float(setting)


def label(setting: Setting) -> str:
    return "fastest" if setting == FASTEST else f"{setting:g} s"


def supports(key: str, setting: Setting) -> str | None:
    """Why the daemon cannot run at ``setting`` (None: it can)."""
    interval = interval_of(key, setting)
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
    """What one daemon gave at one setting, one value per run."""

    takeover: list[float] = field(default_factory=list)
    overlap: list[float] = field(default_factory=list)
    gap: list[float] = field(default_factory=list)
    restart: list[float] = field(default_factory=list)
    idle_cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    # scenario 2: the master's links cut, its processes alive
    cut_takeover: list[float] = field(default_factory=list)
    cut_back: list[float] = field(default_factory=list)
    cut_overlap: list[float] = field(default_factory=list)
    # scenario 4: the client's failed requests, seconds after the event (none failed: no value)
    death_first: list[float] = field(default_factory=list)
    death_last: list[float] = field(default_factory=list)
    death_failed: list[float] = field(default_factory=list)
    failback_first: list[float] = field(default_factory=list)
    failback_last: list[float] = field(default_factory=list)
    failback_failed: list[float] = field(default_factory=list)
    # scenario 7: takeovers by the backup while the master is alive and well
    quiet_false: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def holds(sampler: VipSampler, host: str) -> bool:
    readings = sampler.readings[host]
    return bool(readings) and readings[-1][1]


def takeovers(sampler: VipSampler, after: float) -> int:
    """How many times the backup began to hold the VIP after ``after`` (rising edges of its samples)."""
    count, held = 0, None
    for at, now in list(sampler.readings["backup"]):
        if at >= after and held is False and now:
            count += 1
        held = now
    return count


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


def set_master_links(lab: Lab, state: str) -> None:
    lab.run("master", ["ip", "-batch", "-"], input=f"link set priv0 {state}\nlink set pub0 {state}\n")


# --- scenario 4: the client's view -----------------------------------------------------------------

PROBE = Path(__file__).resolve().parent / "outage_probe.py"
SERVICE_PORT = 17007
PROBE_EVERY = 0.01
PROBE_WAIT = 0.2


class ClientProbe:
    """The echo service on both hosts and the client's request every 10 ms (bench/outage_probe.py).

    Resource handling: every process is the lab's (killed on its destroy at the latest);
    ``close`` ends the client by closing its stdin and reads its report, bounded in time.
    """

    def __init__(self, lab: Lab, limit: float) -> None:
        self.lab = lab
        self.limit = limit
        self.servers: dict[str, subprocess.Popen] = {}
        self.client: subprocess.Popen | None = None
        for host in HOSTS:
            self.serve(host)

    def start_client(self, limit: float) -> None:
        """Start the requests (at most ``limit`` seconds of them), and give them a moment to flow."""
        self.client = self.lab.popen(
            "client", [sys.executable, str(PROBE), "probe", "--address", self.lab.vip, "--port", str(SERVICE_PORT),
                       "--every", str(PROBE_EVERY), "--wait", str(PROBE_WAIT),
                       "--count", str(int(limit / PROBE_EVERY))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # the interpreter starts and the client resolves the VIP's neighbour first

    def serve(self, host: str) -> None:
        """(Re)start the service on ``host``, as its boot would."""
        self.servers[host] = self.lab.popen(host, [sys.executable, str(PROBE), "serve", "--port", str(SERVICE_PORT),
                                                   "--limit", f"{self.limit:g}"],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)

    def close(self) -> list[tuple[float, bool]]:
        """Stop the client and the services; every request's send time and whether it was answered."""
        client, self.client = self.client, None
        try:
            if client is None:
                return []
            try:
                out, err = client.communicate(timeout=PROBE_WAIT + 10)
            except subprocess.TimeoutExpired:
                client.kill()
                out, err = client.communicate()
        finally:
            for server in self.servers.values():
                if server.poll() is None:
                    server.kill()
                server.wait(5)
        if client.returncode != 0 or not out.strip():
            raise BenchError(f"the client's probe failed ({client.returncode}): {err.strip()[-300:]}")
        report = json.loads(out)
        return list(zip(report["sent"], report["answered"]))


def failed_between(requests: list[tuple[float, bool]], start: float, end: float) -> list[float]:
    """Send times of the failed requests sent in [start, end), as seconds after ``start``."""
    return [at - start for at, answered in requests if start <= at < end and not answered]


# --- one cycle on the bridge lab -------------------------------------------------------------------


def start_pair(lab: Lab, daemon: Daemon, settle: float | None) -> None:
    """Start the master, wait until it holds the VIP alone; start the backup, let it settle."""
    triplet = parse_triplet(f"pub0:{lab.vip}/24")
    with VipSampler(lab, triplet, limit=START_TIMEOUT + 10) as sampler:
        daemon.start("master")
        wait_until(lambda: holds(sampler, "master"), START_TIMEOUT, "the master holds the VIP", daemon)
        daemon.start("backup")
        wait_until(lambda: holds(sampler, "master") and not holds(sampler, "backup"), START_TIMEOUT,
                   "only the master holds the VIP", daemon)
    # The backup has heard the master for a while (ten intervals unless told).
    time.sleep(max(2.0, 10 * daemon.interval) if settle is None else settle)
    wait_until(daemon.settled, 10, "the backup is settled", daemon, poll=0.05)


def one_cycle(lab: Lab, daemon: Daemon, cell: Cell, idle_seconds: float, rng: random.Random,
              settle: float | None = None, scenarios: frozenset[str] = frozenset({"1", "3", "6"}),
              hold_seconds: float = 0.0) -> None:
    """Scenarios 6 (idle), 7's quiet hold, then 1 (host death), 4 (the client's view of 1 and 3), 3 (failback)."""
    interval = daemon.interval
    triplet = parse_triplet(f"pub0:{lab.vip}/24")
    # The services outlast the longest cycle: its idle and hold windows, two daemon starts and three waits.
    bound = idle_seconds + hold_seconds + 2 * START_TIMEOUT + 3 * TAKEOVER_TIMEOUT + 60
    probe = ClientProbe(lab, bound) if "4" in scenarios else None
    try:
        start_pair(lab, daemon, settle)

        if idle_seconds > 0 and "6" in scenarios:
            services = {server.pid for server in probe.servers.values()} if probe else set()
            pids = {host: [pid for pid in lab.pids(host) if pid not in services] for host in HOSTS}
            before = {host: cpu_seconds(pids[host]) for host in HOSTS}
            time.sleep(idle_seconds)
            spent = sum(cpu_seconds(pids[host]) - before[host] for host in HOSTS)
            cell.idle_cpu.append(spent / idle_seconds * 3600)
            cell.rss.append(max(rss_mib(pid) for host in HOSTS for pid in pids[host]))

        if hold_seconds > 0:
            with VipSampler(lab, triplet, limit=hold_seconds + 10) as sampler:
                began = time.time()
                time.sleep(hold_seconds)
            cell.quiet_false.append(takeovers(sampler, after=began))

        if not scenarios & {"1", "3", "4"}:
            return
        if probe is not None:
            # Longer than the rest of the cycle can take: two takeover waits and a daemon start.
            probe.start_client(2 * TAKEOVER_TIMEOUT + START_TIMEOUT + 20)
        with VipSampler(lab, triplet, limit=TAKEOVER_TIMEOUT + 10) as sampler:
            time.sleep(rng.uniform(0, interval))
            killed = time.time()
            set_master_links(lab, "down")
            lab.kill_host("master")
            wait_until(lambda: holds(sampler, "backup"), TAKEOVER_TIMEOUT, "the backup holds the VIP", daemon)
            time.sleep(0.05)
        up = sampler.first(lambda s: s.backup, after=killed)
        assert up is not None
        cell.takeover.append(up - killed)
        if probe is not None:
            time.sleep(PROBE_WAIT + 0.3)  # the client's answers via the backup have come in

        lab.run("master", ["ip", "addr", "del", f"{lab.vip}/24", "dev", "pub0"], check=False)  # rebooted
        with VipSampler(lab, triplet, limit=TAKEOVER_TIMEOUT + 10) as sampler:
            lab.revive_host("master")
            if probe is not None:
                probe.serve("master")
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
        if probe is not None:
            time.sleep(PROBE_WAIT + 0.3)
            requests, probe = probe.close(), None
            for first, last, count, failed in (
                (cell.death_first, cell.death_last, cell.death_failed, failed_between(requests, killed, started)),
                (cell.failback_first, cell.failback_last, cell.failback_failed,
                 failed_between(requests, started, float("inf"))),
            ):
                count.append(len(failed))
                if failed:
                    first.append(failed[0])
                    last.append(failed[-1])
    finally:
        if probe is not None:
            try:
                probe.close()
            except BenchError:
                pass  # the cycle's own error is the one to report


def link_cut_cycle(lab: Lab, daemon: Daemon, cell: Cell, rng: random.Random, settle: float | None = None) -> None:
    """Scenario 2: the master's public and private links go down, its processes stay alive; then up again.

    Measured: the links going down -> the VIP on the backup; the links up again -> the master holds
    the VIP alone again (all three preempt), and how long both held it meanwhile.
    """
    triplet = parse_triplet(f"pub0:{lab.vip}/24")
    start_pair(lab, daemon, settle)
    with VipSampler(lab, triplet, limit=2 * TAKEOVER_TIMEOUT + 10) as sampler:
        time.sleep(rng.uniform(0, daemon.interval))
        cut = time.time()
        set_master_links(lab, "down")
        wait_until(lambda: holds(sampler, "backup"), TAKEOVER_TIMEOUT, "the backup holds the VIP (links cut)", daemon)
        time.sleep(0.05)
        up = sampler.first(lambda s: s.backup, after=cut)
        assert up is not None
        cell.cut_takeover.append(up - cut)
        time.sleep(max(0.5, 5 * daemon.interval))  # what the master's daemon does on its own, cut off
        if not daemon.running("master"):
            # ucarp exits when its interface goes down (poll error on its socket): nothing brings it back.
            raise BenchError(f"{daemon.name} on the master exited while its links were down\n"
                             + daemon.log_tail("master", 3))
        restored = time.time()
        set_master_links(lab, "up")
        wait_until(lambda: holds(sampler, "master") and not holds(sampler, "backup"), TAKEOVER_TIMEOUT,
                   "the master holds the VIP alone again (links back)", daemon)
        time.sleep(0.2)
    back = sampler.first(lambda s: s.master and not s.backup, after=restored)
    assert back is not None
    cell.cut_back.append(back - restored)
    cell.cut_overlap.append(sampler.overlap(after=restored))


def byte_compile_ours() -> None:
    """Write failoverd's ``.pyc`` files, as installing the package does (see the module's docstring)."""
    compileall.compile_dir(str(Path(failoverd.__file__).parent), quiet=1)


def _cleanup(lab: Lab, daemon: Daemon) -> None:
    for host in ("backup", "master"):
        daemon.stop(host)
    lab.revive_host("master")
    clear_vip(lab)


def measure(keys: list[str], intervals: list[float], runs: int, idle_seconds: float, seed: int,
            skipped: dict[str, str], settle: float | None = None,
            scenarios: frozenset[str] = frozenset({"1", "3", "6"}),
            hold_seconds: float = 30.0) -> dict[tuple[str, Setting], Cell]:
    """Scenarios 1, 2, 3, 4, 6 at each interval and 7 (each daemon at its fastest) on one bridge lab."""
    rng = random.Random(seed)
    if "ours" in keys:
        byte_compile_ours()
    settings: list[Setting] = list(intervals) if scenarios & {"1", "2", "3", "4", "6"} else []
    if "7" in scenarios:
        settings.append(FASTEST)
    cells: dict[tuple[str, Setting], Cell] = {}
    with tempfile.TemporaryDirectory(prefix="failoverd-peers-") as workdir, Lab(seed=seed, wire="bridge") as lab:
        print(f"lab {lab.lab_id} (kernel bridges), VIP {lab.vip}", flush=True)
        for setting in settings:
            present = [k for k in keys if k not in skipped and supports(k, setting) is None]
            daemons = {k: DAEMONS[k](lab, Path(workdir) / label(setting).replace(" ", ""), interval_of(k, setting),
                                     fastest=setting == FASTEST) for k in present}
            for key in present:
                cells[(key, setting)] = Cell()
            if setting == FASTEST:
                # 7: host death and failback (and the client's view) at the fastest, after a quiet hold.
                steps = [("cycle", (scenarios & {"4"}) | {"1", "3"}, hold_seconds)]
            else:
                steps = [("cycle", scenarios & {"1", "3", "4", "6"}, 0.0)] if scenarios & {"1", "3", "4", "6"} else []
                if "2" in scenarios:
                    steps.append(("cut", frozenset({"2"}), 0.0))
            for run in range(1, runs + 1):
                for step, chosen, hold in steps:
                    order = list(present)
                    rng.shuffle(order)
                    for key in order:
                        daemon, cell = daemons[key], cells[(key, setting)]
                        try:
                            if step == "cut":
                                link_cut_cycle(lab, daemon, cell, rng, settle)
                            else:
                                one_cycle(lab, daemon, cell, idle_seconds, rng, settle, frozenset(chosen), hold)
                            print(f"  {label(setting)} run {run} {daemon.name:22} {progress(cell, step, chosen, hold)}",
                                  flush=True)
                        except BenchError as error:
                            cell.failures.append(str(error).splitlines()[0])
                            print(f"  {label(setting)} run {run} {daemon.name}: FAILED: {error}", flush=True)
                        finally:
                            _cleanup(lab, daemon)
    return cells


def progress(cell: Cell, step: str, scenarios: frozenset[str], hold: float) -> str:
    """One line of what the cycle just measured."""
    if step == "cut":
        return (f"link cut -> VIP up {cell.cut_takeover[-1] * 1000:8.1f} ms; links back -> master alone "
                f"{cell.cut_back[-1] * 1000:7.1f} ms, both held {cell.cut_overlap[-1] * 1000:6.1f} ms")
    parts = []
    if hold > 0:
        parts.append(f"{cell.quiet_false[-1]:g} false takeovers in {hold:g} s")
    if scenarios & {"1", "3", "4"}:
        parts.append(f"host death -> VIP up {cell.takeover[-1] * 1000:8.1f} ms; failback both "
                     f"{cell.overlap[-1] * 1000:6.1f} ms, neither {cell.gap[-1] * 1000:6.1f} ms, master holds again "
                     f"{cell.restart[-1] * 1000:7.1f} ms")
    if "4" in scenarios:
        parts.append(f"client: {cell.death_failed[-1]:g} failed at host death, "
                     f"{cell.failback_failed[-1]:g} at failback")
    if "6" in scenarios and cell.idle_cpu:
        parts.append(f"idle {cell.idle_cpu[-1]:.1f} CPU s/h, RSS {cell.rss[-1]:.1f} MiB")
    return "; ".join(parts)


# --- scenario 5: the false-failover matrix (emulator lab) ----------------------------------------

IMPAIRMENTS: dict[str, Callable[[float], dict[str, float]]] = {
    # Relative to the heartbeat interval, so that the two timings meet the same trouble.
    "loss 30 %": lambda interval: {"loss": 0.3},
    "jitter 0–2 intervals": lambda interval: {"delay": interval, "jitter": interval},
}
PLACEMENTS = {"private link": ("priv",), "both links": ("priv", "pub")}
TIMINGS = ("default", FASTEST)


def false_failovers(keys: list[str], seconds: float, seed: int, skipped: dict[str, str],
                    settle: float | None = None) -> dict[tuple[str, str, str, str], int | str]:
    """Scenario 5: per impairment, placement and timing, how often each backup takes over from a live master.

    One bounded run of ``seconds`` per cell, on a lab whose LANs go through the emulator; the
    impairment on every direction of the LANs named (so heartbeats, answers and ARP alike).
    Values: the count, or why there is none (a failed start, or ucarp's fastest = its default).
    """
    rng = random.Random(seed)
    if "ours" in keys:
        byte_compile_ours()
    results: dict[tuple[str, str, str, str], int | str] = {}
    present = [k for k in keys if k not in skipped]
    with tempfile.TemporaryDirectory(prefix="failoverd-matrix-") as workdir, Lab(seed=seed, wire="emulator") as lab:
        print(f"lab {lab.lab_id} (emulator), VIP {lab.vip}", flush=True)
        triplet = parse_triplet(f"pub0:{lab.vip}/24")
        for impairment, settings_of in IMPAIRMENTS.items():
            for placement, lans in PLACEMENTS.items():
                for timing in TIMINGS:
                    order = list(present)
                    rng.shuffle(order)
                    for key in order:
                        cell = (impairment, placement, timing, key)
                        interval = interval_of(key, timing) if timing == FASTEST else 1.0
                        if timing == FASTEST and FASTEST_INTERVAL[key] == 1.0:
                            results[cell] = "= default"
                            continue
                        daemon = DAEMONS[key](lab, Path(workdir) / f"{len(results)}", interval,
                                              fastest=timing == FASTEST)
                        try:
                            start_pair(lab, daemon, settle)
                            heartbeats = lab.link_stats("priv", "master", "backup")
                            with VipSampler(lab, triplet, limit=seconds + 10) as sampler:
                                for lan in lans:
                                    lab.impair(lan, "*", "*", **settings_of(interval))
                                began = time.time()
                                time.sleep(seconds)
                                for lan in lans:
                                    lab.impair(lan, "*", "*")
                            results[cell] = takeovers(sampler, after=began)
                            # The emulator's own count, so that a quiet cell shows the trouble was there.
                            after = lab.link_stats("priv", "master", "backup")
                            print(f"  {impairment}, {placement}, {timing} ({interval:g} s) {daemon.name:22} "
                                  f"{results[cell]} false takeovers in {seconds:g} s (master -> backup on the "
                                  f"private LAN: {after['offered'] - heartbeats['offered']} frames, "
                                  f"{after['lost'] - heartbeats['lost']} lost)", flush=True)
                        except BenchError as error:
                            results[cell] = "failed"
                            print(f"  {impairment}, {placement}, {timing} {daemon.name}: FAILED: {error}", flush=True)
                        finally:
                            for lan in PLACEMENTS["both links"]:
                                lab.impair(lan, "*", "*")
                            _cleanup(lab, daemon)
    return results


# --- the table -----------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    if not values:
        return "–"
    return (f"{statistics.median(values) * 1000:.1f} ({min(values) * 1000:.1f} – {max(values) * 1000:.1f})")


def _plain(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f} – {max(values):.{digits}f})"


def _count(values: list[float]) -> str:
    return _plain(values, 0)


def _ratio(ours: list[float], peer: list[float]) -> str:
    if not ours or not peer or statistics.median(peer) == 0:
        return "–"
    return f"{statistics.median(ours) / statistics.median(peer):.2f}×"


# (scenario, label, Cell attribute, format); a row is shown when its scenario was run.
ROWS: list[tuple[str, str, str, Callable[[list[float]], str]]] = [
    ("1", "host death → VIP up on the backup, ms", "takeover", _ms),
    ("2", "link cut → VIP up on the backup, ms", "cut_takeover", _ms),
    ("2", "links back → master holds alone, ms", "cut_back", _ms),
    ("2", "links back, both hold, ms", "cut_overlap", _ms),
    ("3", "failback, both hold, ms", "overlap", _ms),
    ("3", "failback, neither holds, ms", "gap", _ms),
    ("3", "master restart → master holds again, ms", "restart", _ms),
    ("4", "client, host death: first failed request, ms after", "death_first", _ms),
    ("4", "client, host death: last failed request, ms after", "death_last", _ms),
    ("4", "client, host death: failed requests (every 10 ms)", "death_failed", _count),
    ("4", "client, failback: first failed request, ms after start", "failback_first", _ms),
    ("4", "client, failback: last failed request, ms after start", "failback_last", _ms),
    ("4", "client, failback: failed requests (every 10 ms)", "failback_failed", _count),
    ("6", "idle CPU of the pair, s per hour", "idle_cpu", _plain),
    ("6", "largest RSS of one process, MiB", "rss", _plain),
    ("7", "no fault: false takeovers in the hold", "quiet_false", _count),
]


def _rows_for(setting: Setting, scenarios: frozenset[str]) -> list[tuple[str, str, Callable[[list[float]], str]]]:
    if setting == FASTEST:
        wanted = {"7", "1", "3"} | (scenarios & {"4"})
    else:
        wanted = set(scenarios) - {"5", "7"}
    return [(text, attribute, show) for scenario, text, attribute, show in ROWS if scenario in wanted]


def _table(lines: list[str], keys: list[str], rows: list[tuple[str, list[str], list[str]]], markdown: bool,
           head: str, measure: str = "measure: median (min – max)") -> None:
    names = [DAEMONS[k].name for k in keys]
    peers = [(k, n) for k, n in zip(keys, names) if k != "ours"]
    if markdown:
        lines.append(f"| {head} | {measure} | " + " | ".join(names)
                     + " | " + " | ".join(f"ours/{n}" for _, n in peers) + " |")
        lines.append("|---" * (2 + len(keys) + len(peers)) + "|")
    for where, shown, ratios in rows:
        what, text = where.split("\t")
        if markdown:
            lines.append(f"| {what} | {text} | " + " | ".join(shown) + " | " + " | ".join(ratios) + " |")
        else:
            lines.append(f"{what}  {text}")
            for name, value in zip(names, shown):
                lines.append(f"    {name:22} {value}")
            if ratios and "ours" in keys:
                lines.append("    ratio ours/peer        " + ", ".join(f"{n}: {r}" for (_, n), r in zip(peers, ratios)))


def report(cells: dict[tuple[str, Setting], Cell], keys: list[str], intervals: list[float],
           skipped: dict[str, str], markdown: bool,
           scenarios: frozenset[str] = frozenset({"1", "3", "6"})) -> str:
    settings: list[Setting] = list(intervals) if scenarios & {"1", "2", "3", "4", "6"} else []
    if "7" in scenarios:
        settings.append(FASTEST)
    lines: list[str] = []
    rows = []
    notes = []
    for setting in settings:
        for text, attribute, show in _rows_for(setting, scenarios):
            values = {}
            for key in keys:
                cell = cells.get((key, setting))
                values[key] = getattr(cell, attribute) if cell else []
            shown = []
            for key in keys:
                why = skipped.get(key) or supports(key, setting)
                shown.append(f"– ({why})" if why and not values[key] else show(values[key]))
            ratios = [_ratio(values.get("ours", []), values[k]) for k in keys if k != "ours"] if "ours" in keys else []
            rows.append((f"{label(setting)}\t{text}", shown, ratios))
        present = {k: c for (k, s), c in cells.items() if s == setting}
        runs = {k: max(len(c.takeover), len(c.cut_takeover), len(c.idle_cpu)) for k, c in present.items()}
        failures = {DAEMONS[k].name: c.failures for k, c in present.items() if c.failures}
        note = f"{label(setting)}: runs per daemon " + ", ".join(f"{DAEMONS[k].name} {n}" for k, n in runs.items())
        if setting == FASTEST:
            note += "; intervals: " + "; ".join(f"{DAEMONS[k].name} {FASTEST_NOTES[k]}" for k in keys)
        if failures:
            note += "; failed runs: " + "; ".join(f"{n}: {len(f)} ({f[0]})" for n, f in failures.items())
        notes.append(note)
    _table(lines, keys, rows, markdown, "interval")
    for note in notes:
        lines.append(note if not markdown else f"\n{note}\n")
    return "\n".join(lines)


def report_matrix(results: dict[tuple[str, str, str, str], int | str], keys: list[str], seconds: float,
                  markdown: bool) -> str:
    """Scenario 5's table: false takeovers per cell (one run of ``seconds`` each)."""
    rows = []
    for impairment in IMPAIRMENTS:
        for placement in PLACEMENTS:
            for timing in TIMINGS:
                values = [results.get((impairment, placement, timing, k), "–") for k in keys]
                counts = {k: [float(v)] for k, v in zip(keys, values) if isinstance(v, int)}
                ratios = [_ratio(counts.get("ours", []), counts.get(k, [])) for k in keys if k != "ours"] \
                    if "ours" in keys else []
                rows.append((f"{impairment}, {placement}\t{timing}: false takeovers in {seconds:g} s",
                             [str(v) for v in values], ratios))
    lines: list[str] = []
    _table(lines, keys, rows, markdown, "impairment (emulator), where", "timing: count (one run per cell)")
    note = ("timings: default = 1 s for all three; fastest = " + "; ".join(
        f"{DAEMONS[k].name} {FASTEST_NOTES[k]}" for k in keys))
    lines.append(note if not markdown else f"\n{note}\n")
    return "\n".join(lines)


SCENARIOS = {
    "1": "host death", "2": "master's links cut only", "3": "failback", "4": "client-visible outage",
    "5": "false-failover matrix (emulator)", "6": "idle cost", "7": "fastest setting",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6, help="cycles per daemon and interval (default 6)")
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=["1", "3", "6"],
                        help="issue 12's scenarios: " + ", ".join(f"{k} {v}" for k, v in SCENARIOS.items())
                        + " (default 1 3 6)")
    parser.add_argument("--idle-seconds", type=float, default=20.0,
                        help="idle window per cycle for the CPU figure; 0 leaves it out (default 20)")
    parser.add_argument("--hold-seconds", type=float, default=30.0,
                        help="scenario 7: the fault-free window per cycle at the fastest setting (default 30)")
    parser.add_argument("--matrix-seconds", type=float, default=60.0,
                        help="scenario 5: the run per cell of the false-failover matrix (default 60)")
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
    if not 0 < args.hold_seconds <= 3600 or not 0 < args.matrix_seconds <= 3600:
        parser.error("--hold-seconds and --matrix-seconds must be above 0 and at most 3600")
    if os.geteuid() != 0:
        print("peers.py: needs root (network namespaces)", file=sys.stderr)
        return 77
    scenarios = frozenset(args.scenarios)
    keys = list(dict.fromkeys(args.daemons))
    skipped = {key: why for key in keys if (why := ensure_installed(key, not args.no_install)) is not None}
    for key, why in skipped.items():
        print(f"leaving out {DAEMONS[key].name}: {why}", flush=True)
    tables = []
    if scenarios - {"5"}:
        cells = measure(keys, args.intervals, args.runs, args.idle_seconds, args.seed, skipped,
                        scenarios=scenarios, hold_seconds=args.hold_seconds)
        tables.append(lambda md: report(cells, keys, args.intervals, skipped, markdown=md, scenarios=scenarios))
    if "5" in scenarios:
        matrix = false_failovers(keys, args.matrix_seconds, args.seed, skipped)
        tables.append(lambda md: report_matrix(matrix, keys, args.matrix_seconds, markdown=md))
    for markdown in (False, True) if args.markdown else (False,):
        for table in tables:
            print()
            print(table(markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())

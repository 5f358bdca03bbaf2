"""The failover pair, live in a lab: heartbeatd on the master, failoverd on the backup (or backups).

The end-to-end harness, shared by the demonstration (``failoverd-lab demo``,
:mod:`failoverd.lab.demo`), the end-to-end tests and the benchmarks, so all
of them run the real programs the same way:

    with Lab(seed=1) as lab:
        pair = FailoverPair(lab, workdir, interval=0.1)
        pair.start_master(); pair.start_backup()
        pair.wait_until(lambda: pair.holds("master"), 5, "the master holds the VIP")
        with VipSampler(lab, pair.vip_triplet) as sampler:
            lab.kill_host("master")
            ...

In a lab built with ``Lab(backups=2)`` the "pair" is a master and two
backups (spec/backups.md): failoverd runs on ``backup`` (``--priority 200``)
and ``backup2`` (``--priority 100``), each with the other as
``--peer ADDR=PRIORITY`` on the private LAN, and heartbeatd heartbeats both with ``--backups 2``; the
sampler watches all three hosts. ``FailoverPair(lab, ..., backups=("backup",))``
runs a plain pair on such a lab.

Every daemon runs in the foreground (``-d``) with its log in ``workdir``,
its own pid file, control socket and state directory, so several pairs can
run on one machine. The notify command is a recording script (``notify.log``
in ``workdir``), unless the caller asks for the real NotifyFailover.

Resource handling: processes are started through ``Lab.popen``, so the lab
kills and reaps whatever is left when it is destroyed.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from failoverd.core.addresses import Triplet, parse_triplet
from failoverd.core.settings import DEFAULT_PRIORITY
from failoverd.lab.lab import Lab
from failoverd.runtime import control
from failoverd.system.namespace import enter_netns

BIN = Path(sys.executable).parent
KEY = b"lab-heartbeat-key-0123456789abcdef\n"
_NOTIFY_SCRIPT = '#!/bin/sh\necho "$(date +%s.%N) $*" >> "{log}"\n'
LOG_SETTLE = 0.05
"""Seconds a daemon's log must not grow before a test reads it (5 x logsetup.BURST_DELAY)."""
LOG_SETTLE_BOUND = 0.5
"""The longest a read waits for that (a daemon logging at DEBUG may never be quiet)."""
_LOG_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) ")
DEFAULT_PRIORITIES: dict[str, int] = {"backup": 200, "backup2": 100}
"""Each backup host's ``--priority`` when several run (the first backup host takes first)."""
PEER_LAN = "priv"
"""The LAN the backups reach each other on (their ``--peer`` addresses)."""


class PairError(RuntimeError):
    """A daemon did not do what the scenario waited for; the message includes its log tail."""


def program(name: str) -> str:
    """The installed program beside this interpreter (the virtual environment's bin)."""
    path = BIN / name
    if not path.exists():
        raise PairError(f"{path} is not installed; run pip install -e . first")
    return str(path)


class FailoverPair:
    def __init__(
        self,
        lab: Lab,
        workdir: Path,
        *,
        interval: float = 0.1,
        authenticated: bool = True,
        managed: bool = True,
        master_targets: Sequence[str] | None = None,
        vips: Sequence[str] | None = None,
        master_address: str | None = None,
        backup_args: Sequence[str] = (),
        master_args: Sequence[str] = (),
        real_notify: bool = False,
        env: dict[str, str] | None = None,
        backups: Sequence[str] | None = None,
        priorities: Mapping[str, int] | None = None,
        host_args: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.lab = lab
        self.workdir = Path(workdir)
        self.interval = interval
        self.authenticated = authenticated
        self.managed = managed
        # The backup hosts that run failoverd (default: every backup host of the lab). With
        # more than one, each gets its priority and the others as peers, the master --backups.
        self.backup_hosts: tuple[str, ...] = tuple(lab.backup_hosts if backups is None else backups)
        if not self.backup_hosts or len(set(self.backup_hosts)) != len(self.backup_hosts) or \
                not set(self.backup_hosts) <= set(lab.backup_hosts):
            raise PairError(f"backups must be distinct backup hosts of the lab ({', '.join(lab.backup_hosts)}), "
                            f"not {list(self.backup_hosts)}")
        self.several = len(self.backup_hosts) > 1
        self.priorities = dict(priorities or (DEFAULT_PRIORITIES if self.several else {}))
        self.host_args = {host: list(args) for host, args in (host_args or {}).items()}
        unknown = set(self.host_args) - {"master", *self.backup_hosts}
        if unknown:
            raise PairError(f"host_args for hosts that run no daemon here: {', '.join(sorted(unknown))}")
        self.master_targets = list(master_targets or [lab.address(b, "priv") for b in self.backup_hosts])
        self.master_address = master_address or lab.address("master", "priv")
        self.backup_args = list(backup_args)
        self.master_args = list(master_args)
        self.env = env
        # The failover addresses (``vips``: triplet texts, e.g. an IPv6 one of an IPv6 lab);
        # the first is "the VIP" of holds(), the sampler and the client's pings.
        self.vip_triplets: tuple[Triplet, ...] = tuple(parse_triplet(t) for t in (vips or [f"pub0:{lab.vip}/24"]))
        self.vip_triplet: Triplet = self.vip_triplets[0]
        self.vip = str(self.vip_triplet.address)
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self._starts = {host: 0 for host in ("master", *self.backup_hosts)}
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.key_file = self.workdir / "key"
        self.key_file.write_bytes(KEY)
        os.chmod(self.key_file, 0o600)
        self.hook_dir = self.workdir / "hooks"
        self.hook_dir.mkdir(exist_ok=True)
        os.chmod(self.hook_dir, 0o755)
        self.notify_log = self.workdir / "notify.log"
        if real_notify:
            self.notify_command = program("NotifyFailover")
        else:
            script = self.workdir / "notify.sh"
            script.write_text(_NOTIFY_SCRIPT.format(log=self.notify_log))
            os.chmod(script, 0o755)
            self.notify_command = str(script)

    # --- command lines ---------------------------------------------------------

    def _common(self, host: str) -> list[str]:
        args = [
            "-d",
            "--interval", f"{self.interval:g}",
            "--hook-dir", str(self.hook_dir),
            "--hook-timeout", "2",
            "--notify-command", self.notify_command,
            "--pid-file", str(self.workdir / f"{host}.pid"),
            "--control-socket", str(self.control_socket(host)),
            "--state-dir", str(self.workdir / f"{host}-state"),
        ]
        if self.authenticated:
            args += ["--key-file", str(self.key_file)]
        return args

    def priority_of(self, host: str) -> int:
        """The backup's ``--priority``: as given, or failoverd's default (what its peers are told it is)."""
        return self.priorities.get(host, DEFAULT_PRIORITY)

    def control_socket(self, host: str) -> Path:
        return self.workdir / f"{host}.sock"

    def master_argv(self) -> list[str]:
        argv = [program("heartbeatd"), *self._common("master")]
        if self.several:
            argv += ["--backups", str(len(self.backup_hosts))]
        argv += [*self.master_args, *self.host_args.get("master", ())]
        if self.managed:
            for triplet in self.vip_triplets:
                argv += ["--manage", str(triplet)]
        return argv + self.master_targets

    def backup_argv(self, host: str = "backup") -> list[str]:
        if host not in self.backup_hosts:
            raise PairError(f"{host!r} runs no failoverd here (backups: {', '.join(self.backup_hosts)})")
        argv = [program("failoverd"), *self._common(host)]
        if self.several:
            if host in self.priorities:
                argv += ["--priority", str(self.priorities[host])]
            for peer in self.backup_hosts:
                if peer != host:
                    argv += ["--peer", f"{self.lab.address(peer, PEER_LAN)}={self.priority_of(peer)}"]
        return [*argv, *self.backup_args, *self.host_args.get(host, ()),
                self.master_address, *map(str, self.vip_triplets)]

    # --- processes -------------------------------------------------------------

    def start(self, host: str, *, wait: float = 10.0) -> subprocess.Popen:
        """Start the host's daemon and wait until its control socket answers."""
        argv = self.master_argv() if host == "master" else self.backup_argv(host)
        self._starts[host] += 1
        log_path = self.workdir / f"{host}-{self._starts[host]}.log"
        env = None if self.env is None else {**os.environ, **self.env}
        with open(log_path, "wb") as log_file:
            child = self.lab.popen(host, argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, env=env)
        self.processes[host] = child
        self.logs[host] = log_path
        self.wait_until(lambda: self._answers(host), wait, f"{host}'s daemon answers on its control socket")
        return child

    def start_master(self, **kwargs: Any) -> subprocess.Popen:
        return self.start("master", **kwargs)

    def start_backup(self, **kwargs: Any) -> subprocess.Popen:
        return self.start("backup", **kwargs)

    def start_backups(self, **kwargs: Any) -> list[subprocess.Popen]:
        """Start failoverd on every backup host of this pair, in order."""
        return [self.start(host, **kwargs) for host in self.backup_hosts]

    def _answers(self, host: str) -> bool:
        child = self.processes[host]
        if child.poll() is not None:
            raise PairError(f"{host}'s daemon exited with status {child.returncode}\n{self.log_tail(host)}")
        try:
            control.request(self.control_socket(host), "ping", timeout=1.0)
        except Exception:
            return False
        return True

    def status(self, host: str) -> dict[str, Any]:
        return control.request(self.control_socket(host), "status", timeout=2.0)

    def stop(self, host: str, *, timeout: float = 15.0) -> int:
        """SIGTERM the host's daemon and wait for it; returns its exit status."""
        child = self.processes[host]
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            return child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
            raise PairError(f"{host}'s daemon did not stop within {timeout:g} s\n{self.log_tail(host)}") from None

    def kill(self, host: str) -> None:
        """SIGKILL the host's daemon only (the host itself stays up)."""
        child = self.processes[host]
        child.kill()
        child.wait(5)

    def reboot_master_addresses(self) -> None:
        """What a reboot does to the master's addresses: the runtime-added VIPs are gone."""
        self.reboot_addresses("master")

    def reboot_addresses(self, host: str) -> None:
        """What a reboot does to the host's addresses: the runtime-added VIPs are gone (a host
        killed with ``Lab.kill_host`` keeps them on its down links until then)."""
        for triplet in self.vip_triplets:
            if self.holds(host, triplet):
                self.lab.run(host, ["ip", "addr", "del", f"{triplet.address}/{triplet.effective_prefixlen}",
                                    "dev", triplet.interface])

    def holders(self, triplet: Triplet | None = None) -> list[str]:
        """The hosts running a daemon of this pair that have the VIP (or ``triplet``'s address) now."""
        return [host for host in self._starts if self.holds(host, triplet)]

    # --- observation -----------------------------------------------------------

    def holds(self, host: str, triplet: Triplet | None = None) -> bool:
        """Whether the host has the VIP (or ``triplet``'s address) now (asked with ``ip``: pyroute2's
        netns support forks, which is unsafe while a :class:`VipSampler` thread runs)."""
        address = (triplet or self.vip_triplet).address
        done = subprocess.run(["ip", "-n", self.lab.ns(host), f"-{address.version}", "-o", "addr", "show"],
                              capture_output=True, text=True, timeout=10, check=True)
        return any(f" {address}/" in line for line in done.stdout.splitlines())

    def holds_all(self, host: str) -> bool:
        return all(self.holds(host, triplet) for triplet in self.vip_triplets)

    def holds_none(self, host: str) -> bool:
        return not any(self.holds(host, triplet) for triplet in self.vip_triplets)

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.01) -> float:
        """Poll ``condition`` until true; return the wall time it became true, or raise PairError."""
        deadline = time.monotonic() + timeout
        while True:
            if condition():
                return time.time()
            if time.monotonic() >= deadline:
                raise PairError(f"timed out after {timeout:g} s waiting until {what}\n{self.log_tails()}")
            time.sleep(poll)

    def log_text(self, host: str, start: int | None = None) -> str:
        """The log of the host's latest daemon (or of its ``start``-th start), once it has settled.

        A daemon's log runs a little behind its state: lines go through a
        listener thread that lets a burst gather (``logsetup.BURST_DELAY``)
        before writing it. So a test that saw a state change through the
        control socket waits here until the file has not grown for
        ``LOG_SETTLE`` seconds (at most ``LOG_SETTLE_BOUND``) before reading.
        """
        path = self.logs.get(host) if start is None else self.workdir / f"{host}-{start}.log"
        if path is None or not path.exists():
            return ""
        deadline = time.monotonic() + LOG_SETTLE_BOUND
        size = path.stat().st_size
        while time.monotonic() < deadline:
            time.sleep(LOG_SETTLE)
            grown = path.stat().st_size
            if grown == size:
                break
            size = grown
        return path.read_text(errors="replace")

    def all_logs(self, host: str) -> str:
        return "".join(self.log_text(host, n) for n in range(1, self._starts[host] + 1))

    def log_tail(self, host: str, lines: int = 40) -> str:
        return f"--- {host} log ---\n" + "\n".join(self.log_text(host).splitlines()[-lines:])

    def log_tails(self) -> str:
        return "\n".join(self.log_tail(host) for host in self.processes)

    def log_time(self, host: str, needle: str, after: float = 0.0) -> float | None:
        """Wall time of the first line of the host's latest log containing ``needle`` (logged after ``after``)."""
        for line in self.log_text(host).splitlines():
            if needle in line:
                stamp = line_time(line, after)
                if stamp is not None and stamp >= after - 0.001:
                    return stamp
        return None

    def notifications(self) -> list[str]:
        if not self.notify_log.exists():
            return []
        return [line.split(" ", 1)[1] for line in self.notify_log.read_text().splitlines() if " " in line]


def line_time(line: str, near: float) -> float | None:
    """The wall time of a daemon log line ``HH:MM:SS.mmm ...`` (local time), on the day nearest ``near``."""
    match = _LOG_TIME.match(line)
    if match is None:
        return None
    hours, minutes, seconds, millis = (int(g) for g in match.groups())
    reference = datetime.fromtimestamp(near or time.time())
    stamp = reference.replace(hour=hours, minute=minutes, second=seconds, microsecond=millis * 1000)
    candidates = [stamp - timedelta(days=1), stamp, stamp + timedelta(days=1)]
    best = min(candidates, key=lambda c: abs(c.timestamp() - reference.timestamp()))
    return best.timestamp()


# --- sampling the VIP through netlink ------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The state of every sampled host at ``at`` (each as last sampled at or before ``at``)."""

    at: float
    holders: frozenset[str]
    """The sampled hosts that held the VIP."""

    @property
    def master(self) -> bool:
        return "master" in self.holders

    @property
    def backup(self) -> bool:
        return "backup" in self.holders

    @property
    def backup2(self) -> bool:
        return "backup2" in self.holders


class VipSampler:
    """Samples, about every millisecond in each namespace, whether the master and the backup hold the VIP
    (and ``backup2`` too in a lab with two backups: ``hosts`` defaults to the master and the lab's backups).

    One thread per namespace: it enters the namespace with setns(2) (which
    moves only the calling thread) and opens a plain pyroute2 ``IPRoute``
    there. ``IPRoute(netns=...)`` is not used: it forks a helper process,
    which can deadlock when other threads run. A context manager, bounded by
    ``limit`` seconds whatever happens.
    """

    def __init__(self, lab: Lab, triplet: Triplet, limit: float = 120.0,
                 hosts: Sequence[str] | None = None) -> None:
        self.lab = lab
        self.triplet = triplet
        self.limit = limit
        self.hosts = tuple(("master", *lab.backup_hosts) if hosts is None else hosts)
        for host in self.hosts:
            lab.ns(host)  # a host this lab has, or TopologyError now rather than in a thread
        self.readings: dict[str, list[tuple[float, bool]]] = {host: [] for host in self.hosts}
        self.flags: dict[str, int] = {host: 0 for host in self.hosts}
        """Every ``IFA_F_*`` flag the VIP was seen with on each host (e.g. tentative, dadfailed)."""
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._run, args=(host,), name=f"vip-sampler-{host}", daemon=True)
            for host in self.readings
        ]

    def __enter__(self) -> VipSampler:
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + 10
        while not all(self.readings.values()) and not self._errors and time.monotonic() < deadline:
            time.sleep(0.001)
        if self._errors:
            self.__exit__(None, None, None)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        if self._errors and exc_info[0] is None:
            raise PairError(f"sampling the VIP failed: {self._errors[0]!r}") from self._errors[0]

    def _run(self, host: str) -> None:
        from failoverd.system.rtnetlink import RouteSocket

        address = self.triplet.address
        readings = self.readings[host]
        try:
            enter_netns(self.lab.ns(host))
            with RouteSocket.open() as route:
                end = time.monotonic() + self.limit
                while not self._stop.is_set() and time.monotonic() < end:
                    # The kernel takes its snapshot between these two clock
                    # readings; the midpoint is the reading's time. A cheap
                    # parse keeps the two sampler threads from holding each
                    # other up on the GIL, which would skew one host's times
                    # against the other's by up to a millisecond and show an
                    # "overlap" that never was.
                    before = time.time()
                    found = [entry.flags for entry in route.addresses() if entry.address == address]
                    after = time.time()
                    held = bool(found)
                    for flags in found:
                        self.flags[host] |= flags
                    readings.append(((before + after) / 2, held))
                    time.sleep(0.0005)
        except BaseException as error:  # reported by __exit__
            self._errors.append(error)

    # analysis

    @property
    def samples(self) -> list[Sample]:
        """Every host's readings merged in time order (from the moment each has one)."""
        events = sorted(
            [(at, host, held) for host, readings in self.readings.items() for at, held in list(readings)]
        )
        state: dict[str, bool] = {}
        merged = []
        for at, host, held in events:
            state[host] = held
            if len(state) == len(self.hosts):
                merged.append(Sample(at, frozenset(h for h, h_held in state.items() if h_held)))
        return merged

    def first(self, predicate: Callable[[Sample], bool], after: float = 0.0) -> float | None:
        for sample in self.samples:
            if sample.at >= after and predicate(sample):
                return sample.at
        return None

    def both_ever(self, after: float = 0.0) -> bool:
        """Whether two hosts (any two of those sampled) ever held the VIP at once."""
        return any(len(s.holders) > 1 for s in self.samples if s.at >= after)

    def ever(self, host: str, after: float = 0.0) -> bool:
        """Whether ``host`` ever held the VIP."""
        return any(host in s.holders for s in self.samples if s.at >= after)

    def overlap(self, after: float = 0.0) -> float:
        """Seconds during which two hosts (any two) held the VIP."""
        return _duration([s for s in self.samples if s.at >= after], lambda s: len(s.holders) > 1)

    def gap(self, after: float = 0.0) -> float:
        """Seconds during which no host held the VIP, from the backup's release to the master's acquire."""
        samples = [s for s in self.samples if s.at >= after]
        released = next((i for i, s in enumerate(samples) if not s.backup), None)
        if released is None:
            return 0.0
        window = samples[released:]
        acquired = next((i for i, s in enumerate(window) if s.master), len(window) - 1)
        return _duration(window[: acquired + 1], lambda s: not s.holders)

    @property
    def count(self) -> int:
        return sum(len(r) for r in self.readings.values())


def _duration(samples: list[Sample], predicate: Callable[[Sample], bool]) -> float:
    return sum(b.at - a.at for a, b in itertools.pairwise(samples) if predicate(a))


# --- the client's view ----------------------------------------------------------------------------


class FirstAnswer:
    """Pings the VIP from the client every 10 ms and notes the wall time of the first reply."""

    def __init__(self, lab: Lab, address: str, limit: float = 30.0) -> None:
        count = int(limit / 0.01)
        family = ["-6"] if ":" in address else []
        argv = [sys.executable, "-u", "-m", "failoverd.lab.ping", *family, "-c", str(count), "-i", "0.01", "-W", "0.2",
                address]
        self.child = lab.popen("client", argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.at: float | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            if "bytes from" in line and self.at is None:
                self.at = time.time()

    def wait(self, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while self.at is None and time.monotonic() < deadline and self.child.poll() is None:
            time.sleep(0.005)
        return self.at

    def close(self) -> None:
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait(5)
        self._thread.join(5)

"""A lab: master, backup and client namespaces joined by two emulated LANs (or two kernel bridges).

::

    with Lab(seed=7) as lab:
        lab.popen("backup", ["failoverd", ...])
        lab.impair("priv", "master", "backup", loss=0.3)
        lab.kill_host("master")
        assert lab.ping("client", lab.vip).received

``Lab(backups=2)`` adds a second backup host, ``backup2``, on both LANs (several backups of one
master, spec/backups.md); the default lab has one, and is built exactly as before.

``Lab(ipv6=True)`` adds IPv6 on both LANs (see :mod:`failoverd.lab.topology` for the plan): the
hosts' IPv6 is on, without router solicitations or the kernel's DAD; the wire namespace's stays off.

``Lab(wire="bridge")`` joins the LANs with two Linux bridges in the wire
namespace instead of the user-space emulator: no impairments, but frames
cross in the kernel, as on a real switch, with no process of ours on the way
(what a benchmark against other daemons wants). A dead host still leaves its
peers' carrier up, since every host's veth peer stays in the wire namespace.

Resource handling: ``create`` builds everything or, on any failure, removes what it built and
re-raises. ``destroy`` stops the emulator, SIGKILLs every process left in the lab's namespaces,
deletes the namespaces and the lab's record; it is idempotent, runs every step even when one fails
and raises :class:`LabError` at the end if anything was left behind. A lab owned by this process
is destroyed on context exit, on KeyboardInterrupt, on SIGTERM (turned into :class:`Terminated`
while a lab is alive, unless the program has its own SIGTERM handler) and at interpreter exit; the
emulator exits by itself when its owner dies, and ``failoverd-lab sweep`` removes what a SIGKILLed
owner leaves.

Error handling: a bad host, LAN or setting raises ``TopologyError``/``ImpairmentError`` before
anything is sent; a failed ``ip`` command raises ``NetnsError`` with ``ip``'s message; an emulator
that refuses or cannot be reached raises ``ControlError``; asking a bridge lab for impairments,
partitions or the emulator's counters raises ``LabError``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from failoverd.lab import netns, registry
from failoverd.lab.control import ControlError, request
from failoverd.lab.impairment import Impairment
from failoverd.lab.ping import PingResult
from failoverd.lab.registry import ProcessId
from failoverd.lab.topology import (
    LANS,
    PREFIX_LEN,
    PREFIX_LEN6,
    WIRE,
    Plan,
    TopologyError,
    check_backups,
    check_lab_id,
    check_lan,
    host_interface,
    new_lab_id,
    wire_port,
)

log = logging.getLogger(__name__)

EMULATOR_START_TIMEOUT = 10.0
EMULATOR_STOP_TIMEOUT = 3.0
RUN_TIMEOUT = 60.0
WIRES = ("emulator", "bridge")


def bridge_name(lan: str) -> str:
    """The bridge carrying ``lan`` in a bridge lab's wire namespace."""
    return f"{check_lan(lan)}-br"


class LabError(RuntimeError):
    """The lab could not be built, or not entirely removed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a lab owned by this process was alive."""


class Lab:
    """One lab. Build it with ``create()`` or a ``with`` block; reach an existing one with ``attach``."""

    def __init__(self, *, seed: int | None = None, owned: bool = True, frame_log: bool = False,
                 wire: str = "emulator", ipv6: bool = False, backups: int = 1) -> None:
        if wire not in WIRES:
            raise LabError(f"unknown wire {wire!r}; expected one of {', '.join(WIRES)}")
        try:
            self.backups = check_backups(backups)
        except TopologyError as exc:
            raise LabError(str(exc)) from None
        if frame_log and wire != "emulator":
            raise LabError("the frame log is the emulator's; a bridge lab has none")
        self.wire = wire
        self.ipv6 = ipv6
        self.plan: Plan | None = None
        self.seed = secrets.randbelow(2**32) if seed is None else seed
        self.owned = owned
        self.frame_log_enabled = frame_log
        self.emulator: ProcessId | None = None
        self._children: list[subprocess.Popen] = []
        self._emulator_child: int | None = None

    # --- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        if self.plan is None:
            self.create()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    @classmethod
    def attach(cls, lab_id: str) -> Lab:
        """The lab ``lab_id`` as recorded by the process that built it (which keeps owning it)."""
        record = registry.read_record(check_lab_id(lab_id))
        if record is None:
            raise LabError(f"no lab {lab_id} is recorded in {registry.state_dir()}")
        lab = cls(seed=int(record["seed"]), owned=False, frame_log=bool(record.get("frame_log")),
                  wire=str(record.get("wire", "emulator")), ipv6=bool(record.get("ipv6")),
                  backups=int(record.get("backups", 1)))
        lab.plan = Plan(lab_id, int(record["subnet"]), lab.backups)
        lab.emulator = ProcessId.from_dict(record.get("emulator"))
        return lab

    def create(self) -> Lab:
        if self.plan is not None:
            raise LabError(f"lab {self.plan.lab_id} already exists")
        try:
            self._reserve()
            self._build()
        except BaseException:
            self.destroy(quiet=True)
            raise
        return self

    def _reserve(self) -> None:
        existing = set(netns.list_namespaces())
        with registry.locked():
            for _ in range(100):
                lab_id = new_lab_id()
                if registry.read_record(lab_id) is None and not any(n.startswith(lab_id) for n in existing):
                    break
            else:
                raise LabError("could not find an unused lab id")
            self.plan = Plan(lab_id, registry.allocate_subnet(lab_id, set()), self.backups)
            # While it is being built, a lab is owned by its builder even if it will outlive it
            # (`failoverd-lab up`): a concurrent sweep must not take it for a leftover.
            registry.write_record(lab_id, self._record(owner=ProcessId.of(os.getpid()), state="creating"))
        if self.owned:
            _live_labs.add(self)
            _arm_sigterm()

    def _build(self) -> None:
        plan = self._plan
        for role in (*plan.hosts, WIRE):
            netns.add_namespace(plan.ns(role))
        wire = plan.ns(WIRE)
        netns.ip_batch(wire, [
            f"link add {wire_port(lan, host)} type veth peer name {host_interface(lan)} "
            f"address {plan.mac(host, lan)} netns {plan.ns(host)}"
            for lan, host in plan.links()
        ])
        self._prepare_namespaces()
        for host in plan.hosts:
            commands = ["link set lo up"] + [
                f"address add {plan.address(host, lan)}/{PREFIX_LEN} dev {host_interface(lan)}"
                for lan in self._lans_of(host)
            ]
            if self.ipv6:
                commands += [
                    f"address add {plan.address6(host, lan)}/{PREFIX_LEN6} dev {host_interface(lan)} nodad"
                    for lan in self._lans_of(host)
                ]
            netns.ip_batch(plan.ns(host), commands)
        if self.wire == "bridge":
            # No STP, no forwarding delay, no multicast snooping (ucarp's and
            # VRRP's adverts are multicast and there is no querier): a plain hub-like switch.
            netns.ip_batch(wire, [
                f"link add {bridge_name(lan)} type bridge forward_delay 0 stp_state 0 mcast_snooping 0"
                for lan in LANS
            ] + [f"link set {wire_port(lan, host)} master {bridge_name(lan)}" for lan, host in plan.links()]
              + [f"link set {bridge_name(lan)} up" for lan in LANS])
        netns.ip_batch(wire, [f"link set {wire_port(lan, host)} up" for lan, host in plan.links()])
        if self.wire == "emulator":
            self._start_emulator()
        for host in plan.hosts:
            self.revive_host(host)
        owner = ProcessId.of(os.getpid()) if self.owned else None
        registry.write_record(plan.lab_id, self._record(owner=owner, state="running"))

    def _prepare_namespaces(self) -> None:
        plan = self._plan
        jobs = []
        for role in (*plan.hosts, WIRE):
            interfaces = [host_interface(lan) for lan in self._lans_of(role)] if role != WIRE else []
            ipv6 = ["--quiet-ipv6", *interfaces] if self.ipv6 and interfaces else ["--no-ipv6"]
            argv = [sys.executable, "-m", "failoverd.lab.nsprep", *ipv6]
            if interfaces:
                argv += ["--no-offload", *interfaces]
            jobs.append((role, subprocess.Popen(netns.exec_argv(plan.ns(role), argv),
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        failures = []
        for role, job in jobs:
            try:
                out, _ = job.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                job.kill()
                out, _ = job.communicate()
            if job.returncode != 0:
                failures.append(f"{role}: {out.strip()}")
        if failures:
            raise LabError("preparing the namespaces failed: " + "; ".join(failures))

    def _start_emulator(self) -> None:
        plan = self._plan
        directory = registry.lab_dir(plan.lab_id)
        config = {
            "lab": plan.lab_id,
            "seed": self.seed,
            "ports": {lan: {host: wire_port(lan, host) for host in plan.members[lan]} for lan in LANS},
            "control": str(directory / "wire.sock"),
            "frame_log": str(directory / "frames.jsonl") if self.frame_log_enabled else None,
            "owner_pid": os.getpid() if self.owned else None,
        }
        (directory / "wire.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        argv = netns.exec_argv(plan.ns(WIRE), [sys.executable, "-m", "failoverd.lab.emulator",
                                                "--config", str(directory / "wire.json")])
        log_fd = os.open(directory / "wire.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # posix_spawn, not Popen: a lab left running by `failoverd-lab up` must not leave a
            # Popen object behind to complain; a new session keeps a terminal's ^C away from the
            # wire, which is stopped in order by destroy() instead.
            pid = os.posix_spawn(argv[0], argv, dict(os.environ), setsid=True, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ])
        finally:
            os.close(log_fd)
        self._emulator_child = pid
        self.emulator = ProcessId.of(pid)
        deadline = time.monotonic() + EMULATOR_START_TIMEOUT
        while True:
            try:
                self._control({"op": "ping"}, timeout=1.0)
                return
            except ControlError as exc:
                if self._reap_emulator(block=False):
                    raise LabError(f"the emulator exited at start-up: {self._log_tail()}") from None
                if time.monotonic() > deadline:
                    raise LabError(f"the emulator did not answer within {EMULATOR_START_TIMEOUT:g} s: "
                                   f"{exc}; {self._log_tail()}") from None
                time.sleep(0.02)

    def destroy(self, quiet: bool = False) -> None:
        """Remove everything of this lab. Safe to call twice, and on a half-built lab."""
        if self.plan is None:
            return
        plan = self.plan
        problems: list[str] = []
        self._stop_emulator()
        for role in (WIRE, *plan.hosts):
            ns = plan.ns(role)
            try:
                if ns in netns.list_namespaces():
                    netns.kill_all(ns)
                    netns.delete_namespace(ns)
            except netns.NetnsError as exc:
                problems.append(str(exc))
        for child in self._children:
            _reap(child)
        self._children.clear()
        if not problems:
            registry.remove_record(plan.lab_id)
            self.plan = None
        _live_labs.discard(self)
        if not _live_labs:
            _disarm_sigterm()
        if problems and not quiet:
            raise LabError(f"lab {plan.lab_id} not entirely removed: " + "; ".join(problems))

    def _stop_emulator(self) -> None:
        if self.emulator is None or not self.emulator.alive():
            self._reap_emulator(block=False)
            return
        try:
            self._control({"op": "shutdown"}, timeout=1.0)
        except ControlError:
            try:
                os.kill(self.emulator.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + EMULATOR_STOP_TIMEOUT
        while self.emulator.alive() and time.monotonic() < deadline:
            self._reap_emulator(block=False)
            time.sleep(0.01)
        if self.emulator.alive():
            # Not a leftover (killing the wire namespace's processes would end it anyway), but
            # its final counters are lost: say so.
            log.warning("emulator %d did not stop within %g s; killing it", self.emulator.pid,
                        EMULATOR_STOP_TIMEOUT)
            os.kill(self.emulator.pid, signal.SIGKILL)
        self._reap_emulator(block=False)

    def _reap_emulator(self, block: bool) -> bool:
        """True if the emulator (when it is our child) has exited."""
        if self._emulator_child is None:
            return self.emulator is None or not self.emulator.alive()
        try:
            pid, _ = os.waitpid(self._emulator_child, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid = self._emulator_child
        if pid:
            self._emulator_child = None
            return True
        return False

    def _log_tail(self) -> str:
        try:
            text = (registry.lab_dir(self._plan.lab_id) / "wire.log").read_text(errors="replace")
        except OSError:
            return "(no emulator log)"
        return text.strip()[-600:] or "(empty emulator log)"

    # --- description -----------------------------------------------------------------------------

    @property
    def _plan(self) -> Plan:
        if self.plan is None:
            raise LabError("the lab does not exist (not created yet, or destroyed)")
        return self.plan

    @property
    def lab_id(self) -> str:
        return self._plan.lab_id

    @property
    def vip(self) -> str:
        """The virtual (service) address on the public LAN. The lab never configures it."""
        return self._plan.vip

    def ns(self, name: str) -> str:
        """The namespace of a host (``master``, ``backup``, ``client``; ``backup2`` too in a lab built
        with ``backups=2``) or of the ``wire``."""
        if name != WIRE:
            self._plan.check_host(name)
        return self._plan.ns(name)

    @property
    def hosts(self) -> tuple[str, ...]:
        """This lab's hosts: master, its backups, client."""
        return self._plan.hosts

    @property
    def backup_hosts(self) -> tuple[str, ...]:
        """This lab's backup hosts, in order: ``("backup",)`` or ``("backup", "backup2")``."""
        return self._plan.backup_hosts

    def _lans_of(self, host: str) -> list[str]:
        return [lan for lan in LANS if host in self._plan.members[lan]]

    def address(self, host: str, lan: str = "pub") -> str:
        return self._plan.address(host, lan)

    def address6(self, host: str, lan: str = "pub") -> str:
        """The host's IPv6 address on ``lan`` (an IPv6 lab only)."""
        self._require_ipv6()
        return self._plan.address6(host, lan)

    def link_local(self, host: str, lan: str = "priv") -> str:
        """The host's link-local address on ``lan`` (an IPv6 lab only), without a scope."""
        self._require_ipv6()
        return self._plan.link_local(host, lan)

    @property
    def vip6(self) -> str:
        """The IPv6 virtual address on the public LAN (an IPv6 lab only). The lab never configures it."""
        self._require_ipv6()
        return self._plan.vip6

    def _require_ipv6(self) -> None:
        if not self.ipv6:
            raise LabError("this lab has no IPv6 (build it with Lab(ipv6=True))")

    def interface(self, lan: str) -> str:
        return host_interface(lan)

    @property
    def control_path(self) -> str:
        return str(registry.lab_dir(self.lab_id) / "wire.sock")

    @property
    def directory(self) -> Path:
        return registry.lab_dir(self.lab_id)

    def describe(self) -> dict[str, Any]:
        plan = self._plan
        return {
            "id": plan.lab_id,
            "seed": self.seed,
            "wire": self.wire,
            "ipv6": self.ipv6,
            "backups": plan.backups,
            "namespaces": {role: plan.ns(role) for role in (*plan.hosts, WIRE)},
            "lans": {
                lan: {
                    "network": plan.network(lan),
                    "interface": host_interface(lan),
                    "hosts": {host: {"address": plan.address(host, lan), "mac": plan.mac(host, lan)}
                              for host in plan.members[lan]},
                }
                for lan in LANS
            },
            "vip": f"{plan.vip}/{PREFIX_LEN}",
            "control": str(registry.lab_dir(plan.lab_id) / "wire.sock"),
            "directory": str(registry.lab_dir(plan.lab_id)),
            "emulator_pid": self.emulator.pid if self.emulator else None,
        }

    def _record(self, owner: ProcessId | None, state: str) -> dict[str, Any]:
        previous = registry.read_record(self._plan.lab_id) or {}
        return {
            **self.describe(),
            "subnet": self._plan.subnet,
            "state": state,
            "frame_log": self.frame_log_enabled,
            "owner": owner.to_dict() if owner else None,
            "emulator": self.emulator.to_dict() if self.emulator else None,
            "created": previous.get("created", time.time()),
        }

    # --- processes -------------------------------------------------------------------------------

    def run(self, name: str, argv: Sequence[str], *, timeout: float = RUN_TIMEOUT, check: bool = True,
            **kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` inside a namespace and wait for it (text output captured unless told otherwise)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(netns.exec_argv(self.ns(name), argv), timeout=timeout, check=check, **kwargs)

    def popen(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` inside a namespace. The lab kills and reaps it on ``destroy``."""
        child = subprocess.Popen(netns.exec_argv(self.ns(name), argv), **kwargs)
        self._children.append(child)
        return child

    def pids(self, name: str) -> list[int]:
        return netns.pids(self.ns(name))

    def ping(self, src: str, address: str, *, count: int = 3, interval: float = 0.1,
             wait: float = 1.0) -> PingResult:
        """ICMP echo from host ``src`` to ``address`` (see :mod:`failoverd.lab.ping`)."""
        argv = [sys.executable, "-m", "failoverd.lab.ping", "--json", "-c", str(count),
                "-i", str(interval), "-W", str(wait), address]
        done = self.run(src, argv, check=False, timeout=count * interval + wait + 30)
        if done.returncode not in (0, 1):
            raise LabError(f"ping from {src} to {address} failed: {done.stderr.strip()}")
        return PingResult.from_dict(json.loads(done.stdout))

    # --- host failures ---------------------------------------------------------------------------

    def kill_host(self, host: str) -> list[int]:
        """The host dies: SIGKILL every process in its namespace, then set its links down.

        The other hosts keep their carrier: their veth peers are in the wire namespace.
        Returns the PIDs killed.
        """
        ns = self.ns(host)
        killed = netns.kill_all(ns)
        netns.ip_batch(ns, [f"link set {host_interface(lan)} down" for lan in self._lans_of(host)])
        for child in self._children:
            if child.pid in killed:
                _reap(child)
        return killed

    def revive_host(self, host: str) -> None:
        """Set the host's links up again (its addresses were kept; its processes are not restarted)."""
        ns = self.ns(host)
        netns.ip_batch(ns, [f"link set {host_interface(lan)} up" for lan in self._lans_of(host)])

    def link_state(self, host: str, lan: str) -> dict[str, bool]:
        """Whether the host's interface on ``lan`` is administratively up and has carrier."""
        self._plan.check_member(lan, host)
        entry = netns.links(self.ns(host))[host_interface(lan)]
        flags = entry.get("flags", [])
        return {"up": "UP" in flags, "carrier": "LOWER_UP" in flags}

    # --- the wire --------------------------------------------------------------------------------

    def _control(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        if self.wire != "emulator":
            raise LabError(f"lab {self.lab_id} joins its LANs with kernel bridges: {message['op']!r} "
                           "needs the emulator (Lab(wire='emulator'))")
        return request(self.control_path, message, timeout=timeout)

    def impair(self, lan: str, src: str, dst: str, **settings: float) -> list[str]:
        """Set the impairment of ``src`` → ``dst`` on ``lan`` (one direction; ``"*"`` selects all).

        Settings: loss, delay, jitter, duplicate, reorder, reorder_gap (probabilities and seconds);
        what is not given is perfect, so ``impair(lan, src, dst)`` clears the link.
        """
        impairment = Impairment.from_dict(settings)
        self._check_selectors(src, dst)
        answer = self._control({"op": "impair", "lan": lan, "src": src, "dst": dst,
                                "settings": impairment.to_dict()})
        return answer["links"]

    def partition(self, lan: str, a: str, b: str = "*") -> list[str]:
        """Cut ``a`` from ``b`` (default: from every other host) on ``lan``, both directions."""
        if lan != "*":
            check_lan(lan)
        self._check_selectors(a, b)
        return self._control({"op": "partition", "lan": lan, "a": a, "b": b})["links"]

    def heal(self, lan: str = "*", a: str = "*", b: str = "*") -> list[str]:
        """Undo partitions (all of them by default). Impairments stay."""
        self._check_selectors(a, b)
        return self._control({"op": "heal", "lan": lan, "a": a, "b": b})["links"]

    def _check_selectors(self, *hosts: str) -> None:
        """Refuse, before anything is sent, a host this lab does not have (``"*"`` selects all)."""
        for host in hosts:
            if host != "*":
                self._plan.check_host(host)

    def stats(self) -> dict[str, Any]:
        return self._control({"op": "stats"})

    def link_stats(self, lan: str, src: str, dst: str) -> dict[str, Any]:
        for link in self.stats()["links"]:
            if (link["lan"], link["src"], link["dst"]) == (lan, src, dst):
                return link
        raise TopologyError(f"no link {src} -> {dst} on {lan!r}")

    def frame_log(self, path: str | None) -> None:
        """Log every frame's fate as JSON lines to ``path`` (``None`` stops logging)."""
        self._control({"op": "frame_log", "path": path})


def _reap(child: subprocess.Popen) -> None:
    for stream in (child.stdin, child.stdout, child.stderr):
        if stream:
            stream.close()
    if child.poll() is None:
        child.kill()
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


# --- clean-up of labs this process owns --------------------------------------------------------------

_live_labs: set[Lab] = set()
_previous_sigterm: Any = None
_sigterm_armed = False


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated("SIGTERM")


def _arm_sigterm() -> None:
    global _previous_sigterm, _sigterm_armed
    if _sigterm_armed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_armed = True


def _disarm_sigterm() -> None:
    global _sigterm_armed
    if _sigterm_armed and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _previous_sigterm)
        _sigterm_armed = False


@atexit.register
def _destroy_live_labs() -> None:
    for lab in list(_live_labs):
        lab.destroy(quiet=True)


__all__ = ["Lab", "LabError", "Terminated"]

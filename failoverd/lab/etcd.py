"""A real etcd cluster in namespaces of its own: the witness for the lab and its tests.

Debian's ``etcd-server`` (``/usr/bin/etcd``), one member per namespace
``fo<hex>-etcd<n>``, and client hosts ``fo<hex>-peer<n>`` for the programs
that use it, all joined by a bridge inside ``fo<hex>-ewire`` (never the root
namespace: nothing here touches the host's own interfaces). Every namespace
has the address ``10.77.0.<n>/24`` on ``eth0`` (members 1.., peers 101..): the
namespaces are private to this cluster, so two clusters at once never meet.

Cutting it the ways that matter (spec/witness.md, "Tested against a real
cluster"): :meth:`EtcdCluster.isolate` takes a namespace's bridge port down
(a member partitioned from the others and from every client, or a client
host cut from every member) and :meth:`~EtcdCluster.rejoin` brings it back;
:meth:`~EtcdCluster.stop` / :meth:`~EtcdCluster.start` a member or all of
them (SIGTERM, data kept); :meth:`~EtcdCluster.kill` SIGKILLs one.
:meth:`~EtcdCluster.leader` names the current leader.

The timing is etcd's own advice scaled to a LAN of veths: heartbeat 50 ms,
election timeout 500 ms (so a lease's minimum TTL is 1 s, not 2 s).

Error handling: a missing ``etcd`` binary raises :class:`EtcdLabError` at
:meth:`~EtcdCluster.create` saying which package to install; a member that
does not become healthy in time raises it with the tail of its log.

Resource handling: :class:`EtcdCluster` is a context manager. Everything it
made -- the member processes it started (ended by their PIDs), the
namespaces, the data directory, the lab registry record that keeps
``failoverd-lab clean`` from taking the namespaces for leftovers -- is removed
on exit, also after a failure half-way through :meth:`create`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from failoverd.lab import netns, registry
from failoverd.lab.registry import ProcessId
from failoverd.lab.topology import new_lab_id
from failoverd.system.namespace import in_netns

T = TypeVar("T")

SUBNET = "10.77.0"
CLIENT_PORT = 2379
PEER_PORT = 2380
HEARTBEAT_MS = 50
ELECTION_MS = 500
READY_TIMEOUT = 30.0  # seconds for a member (or the cluster) to answer healthy
STOP_TIMEOUT = 10.0
BRIDGE = "br0"


class EtcdLabError(RuntimeError):
    """The lab's etcd cluster could not be set up or changed; the message says why."""


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise EtcdLabError("etcd is not installed (Debian package etcd-server; scripts/bootstrap installs it)")
    return path


def etcdctl_binary() -> str:
    path = shutil.which("etcdctl")
    if path is None:
        raise EtcdLabError("etcdctl is not installed (Debian package etcd-client; scripts/bootstrap installs it)")
    return path


class EtcdCluster:
    """``members`` etcd members and ``peers`` client namespaces on one private bridge."""

    def __init__(self, members: int = 3, peers: int = 2, *, tls: bool = False) -> None:
        if not 1 <= members <= 9 or not 0 <= peers <= 9:
            raise EtcdLabError(f"1..9 members and 0..9 peers, not {members} and {peers}")
        self.lab_id = new_lab_id()
        self.members = [f"etcd{n}" for n in range(1, members + 1)]
        self.peers = [f"peer{n}" for n in range(1, peers + 1)]
        self.data_dir = Path(_fast_tmp() or tempfile.gettempdir()) / f"{self.lab_id}-etcd"  # made by create()
        self.tls = tls  # clients speak https and must show a certificate of the cluster's own CA
        self._processes: dict[str, subprocess.Popen] = {}
        self._made: list[str] = []
        self._attached: dict[str, str] = {}
        """Peers living in namespaces made by someone else (:meth:`attach`): name -> namespace."""

    # --- names and addresses -------------------------------------------------------------------

    def ns(self, name: str) -> str:
        """The namespace of a member, a peer, or "ewire"."""
        if name not in (*self.members, *self.peers, "ewire"):
            raise EtcdLabError(f"no {name!r} in this cluster (members {self.members}, peers {self.peers})")
        return self._attached.get(name, f"{self.lab_id}-{name}")

    def address(self, name: str) -> str:
        if name in self.members:
            return f"{SUBNET}.{self.members.index(name) + 1}"
        if name in self.peers:
            return f"{SUBNET}.{self.peers.index(name) + 101}"
        raise EtcdLabError(f"{name!r} has no address in this cluster")

    def endpoint(self, member: str) -> str:
        return f"{self._scheme}://{self.address(member)}:{CLIENT_PORT}"

    @property
    def _scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def tls_dir(self) -> Path:
        """With ``tls``: ``ca.crt``, and ``client.crt``/``client.key`` for the peers (made by create())."""
        return self.data_dir / "tls"

    @property
    def endpoints(self) -> list[str]:
        return [self.endpoint(member) for member in self.members]

    # --- building and tearing down ------------------------------------------------------------

    def __enter__(self) -> EtcdCluster:
        return self.create()

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def create(self) -> EtcdCluster:
        etcd_binary()
        etcdctl_binary()
        try:
            with registry.locked():
                registry.write_record(self.lab_id, {
                    "id": self.lab_id, "state": "etcd", "owner": _this_process().to_dict(),
                    "created": time.time(),
                })
            self.data_dir.mkdir(mode=0o700)
            if self.tls:
                self._make_certificates()
            self._build()
            for member in self.members:
                self._launch(member, state="new")
            self.wait_healthy()
        except BaseException:
            self.destroy()
            raise
        return self

    def _build(self) -> None:
        wire = self.ns("ewire")
        netns.add_namespace(wire)
        self._made.append(wire)
        netns.ip_batch(wire, ["link set lo up", f"link add {BRIDGE} type bridge", f"link set {BRIDGE} up"])
        for name in (*self.members, *self.peers):
            ns = self.ns(name)
            netns.add_namespace(ns)
            self._made.append(ns)
            # The port keeps the node's name inside the wire; eth0 moves into the node.
            netns.ip(wire, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", ns)
            netns.ip_batch(wire, [f"link set {name} master {BRIDGE}", f"link set {name} up"])
            netns.ip_batch(ns, ["link set lo up", f"addr add {self.address(name)}/24 dev eth0",
                                "link set eth0 up"])

    def attach(self, name: str, namespace: str, device: str = "etcd0") -> str:
        """Join a namespace made by someone else (a lab host running a daemon) to the cluster's
        wire as the peer ``name``, with ``device`` and the peer's address in it; returns the address.

        :meth:`isolate` and :meth:`rejoin` cut it like any peer; the link goes with the
        wire at :meth:`destroy`, the namespace stays its maker's."""
        if name in (*self.members, *self.peers):
            raise EtcdLabError(f"{name!r} is already a node of this cluster")
        self.peers.append(name)
        self._attached[name] = namespace
        netns.ip(self.ns("ewire"), "link", "add", name, "type", "veth", "peer", "name", device, "netns", namespace)
        netns.ip_batch(self.ns("ewire"), [f"link set {name} master {BRIDGE}", f"link set {name} up"])
        netns.ip_batch(namespace, [f"addr add {self.address(name)}/24 dev {device}", f"link set {device} up"])
        return self.address(name)

    def destroy(self) -> None:
        """Remove everything this cluster made; safe to call twice."""
        for member in list(self._processes):
            self._signal(member, signal.SIGKILL)
        for ns in reversed(self._made):
            try:
                netns.kill_all(ns)  # only the namespaces this cluster made
                netns.delete_namespace(ns)
            except netns.NetnsError:
                pass  # reported by the next check of leftovers; keep removing the rest
        self._made.clear()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        with registry.locked():
            registry.remove_record(self.lab_id)

    # --- members -----------------------------------------------------------------------------

    def _launch(self, member: str, state: str) -> None:
        cluster = ",".join(f"{m}=http://{self.address(m)}:{PEER_PORT}" for m in self.members)
        me = self.address(member)
        argv = [
            etcd_binary(), "--name", member, "--data-dir", str(self.data_dir / member),
            "--listen-peer-urls", f"http://{me}:{PEER_PORT}",
            "--initial-advertise-peer-urls", f"http://{me}:{PEER_PORT}",
            "--listen-client-urls", f"{self._scheme}://{me}:{CLIENT_PORT},{self._scheme}://127.0.0.1:{CLIENT_PORT}",
            "--advertise-client-urls", f"{self._scheme}://{me}:{CLIENT_PORT}",
            "--initial-cluster", cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", self.lab_id,
            "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]
        if self.tls:
            argv += ["--cert-file", str(self.tls_dir / f"{member}.crt"), "--key-file", str(self.tls_dir / f"{member}.key"),
                     "--trusted-ca-file", str(self.tls_dir / "ca.crt"), "--client-cert-auth"]
        log = open(self.data_dir / f"{member}.log", "ab")  # noqa: SIM115 - the child owns it from here
        try:
            self._processes[member] = subprocess.Popen(
                netns.exec_argv(self.ns(member), argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        finally:
            log.close()

    def _signal(self, member: str, signum: int) -> None:
        process = self._processes.pop(member, None)
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)  # our own child, by its PID
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def pids(self) -> list[int]:
        """The running members' process IDs (for measuring what the cluster costs)."""
        return [process.pid for process in self._processes.values() if process.poll() is None]

    def port_counters(self, name: str) -> tuple[int, int]:
        """Bytes and packets through a node's port on the wire so far, both directions together."""
        self.ns(name)  # the port keeps the node's name
        links = json.loads(netns.ip(self.ns("ewire"), "-s", "-j", "link", "show", "dev", name))
        stats = links[0]["stats64"]
        return (stats["rx"]["bytes"] + stats["tx"]["bytes"], stats["rx"]["packets"] + stats["tx"]["packets"])

    def running(self, member: str) -> bool:
        process = self._processes.get(member)
        return process is not None and process.poll() is None

    def start(self, *members: str) -> None:
        """Start stopped members again (all stopped ones without arguments), with their data."""
        for member in members or [m for m in self.members if not self.running(m)]:
            if not self.running(member):
                self._launch(self._member(member), state="existing")

    def stop(self, *members: str) -> None:
        """SIGTERM members (all without arguments) and wait until they are gone."""
        for member in members or self.members:
            self._signal(self._member(member), signal.SIGTERM)

    def kill(self, member: str) -> None:
        """SIGKILL one member (it keeps what it had written to disk)."""
        self._signal(self._member(member), signal.SIGKILL)

    def _member(self, name: str) -> str:
        if name not in self.members:
            raise EtcdLabError(f"{name!r} is not a member of this cluster ({', '.join(self.members)})")
        return name

    # --- the network --------------------------------------------------------------------------

    def isolate(self, name: str) -> None:
        """Cut a member or a peer from every other namespace of the cluster."""
        self.ns(name)
        netns.ip(self.ns("ewire"), "link", "set", name, "down")

    def rejoin(self, name: str | None = None) -> None:
        """Undo :meth:`isolate` for ``name`` (everyone without an argument)."""
        for node in [name] if name else [*self.members, *self.peers]:
            self.ns(node)
            netns.ip(self.ns("ewire"), "link", "set", node, "up")

    # --- looking at it ------------------------------------------------------------------------

    def _status(self, member: str) -> dict | None:
        """``etcdctl endpoint status`` of one member from inside its namespace, or None."""
        argv = netns.exec_argv(self.ns(member), [
            etcdctl_binary(), "--endpoints", f"{self._scheme}://127.0.0.1:{CLIENT_PORT}", "--command-timeout=1s",
            "--dial-timeout=1s", *self.etcdctl_tls(), "-w", "json", "endpoint", "status"])
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=5,
                                  env={**os.environ, "ETCDCTL_API": "3"})
        except subprocess.TimeoutExpired:
            # etcdctl outlived its own 1 s timeouts (a starved machine, a member still starting):
            # no answer is "not known healthy", which the callers' bounded waits retry.
            return None
        if done.returncode != 0:
            return None
        try:
            return json.loads(done.stdout)[0]["Status"]
        except (ValueError, IndexError, KeyError):
            return None

    def leader(self) -> str | None:
        """The member that is leader now as the running members see it (None if none is)."""
        for member in self.members:
            if not self.running(member):
                continue
            status = self._status(member)
            if status and status.get("leader") and status.get("leader") == status.get("header", {}).get("member_id"):
                return member
        return None

    def wait_healthy(self, timeout: float = READY_TIMEOUT) -> str:
        """Wait (bounded) until the running members have a leader; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [m for m in self._processes if self._processes[m].poll() is not None]
            if dead:
                raise EtcdLabError(f"etcd member {dead[0]} exited ({self._processes[dead[0]].returncode}):\n"
                                   + self.log_tail(dead[0]))
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.1)
        raise EtcdLabError(f"no etcd leader within {timeout:g} s:\n"
                           + "\n".join(self.log_tail(m) for m in self.members))

    def log_tail(self, member: str, lines: int = 15) -> str:
        try:
            text = (self.data_dir / f"{member}.log").read_text(errors="replace")
        except OSError:
            return f"({member}: no log)"
        return f"--- {member} ---\n" + "\n".join(text.splitlines()[-lines:])

    def etcdctl_tls(self) -> list[str]:
        """etcdctl's options for this cluster's TLS (none without it)."""
        if not self.tls:
            return []
        return [f"--cacert={self.tls_dir / 'ca.crt'}", f"--cert={self.tls_dir / 'client.crt'}",
                f"--key={self.tls_dir / 'client.key'}"]

    def _make_certificates(self) -> None:
        """A CA of the cluster's own, a server certificate per member (its address and
        127.0.0.1), and one client certificate for the peers; EC P-256, valid one day."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise EtcdLabError("a TLS cluster needs the openssl command (Debian package openssl)")
        directory = self.tls_dir
        directory.mkdir(mode=0o700)

        def call(*args: str) -> None:
            done = subprocess.run([openssl, *args], cwd=directory, capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                raise EtcdLabError(f"openssl {' '.join(args)}: {done.stderr.strip()}")

        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        call("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", f"/CN={self.lab_id}-ca")
        for name, extensions in [
            *((m, f"subjectAltName=IP:{self.address(m)},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth")
              for m in self.members),
            ("client", "extendedKeyUsage=clientAuth"),
        ]:
            (directory / f"{name}.ext").write_text(extensions + "\n")
            call("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
            call("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext")

    # --- running code on a peer ---------------------------------------------------------------

    def on(self, peer: str, function: Callable[[], T]) -> T:
        """Run ``function`` in a fresh thread inside ``peer``'s namespace (sockets it makes are there)."""
        if peer not in self.peers:
            raise EtcdLabError(f"{peer!r} is not a peer of this cluster ({', '.join(self.peers)})")
        return in_netns(self.ns(peer), function)


def _fast_tmp() -> str | None:
    # etcd fsyncs every write: on tmpfs that costs nothing, which keeps the tests about
    # the protocol and not about the disk of a shared machine.
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _this_process() -> ProcessId:
    """This process as the lab registry records an owner (it is alive, so its start time is known)."""
    me = ProcessId.of(os.getpid())
    assert me is not None
    return me

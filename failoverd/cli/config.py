"""Everything a daemon needs to run, as validated values.

The programs turn command lines into these (see :mod:`failoverd.cli.options`);
the runtime reads them and nothing else, so a value here is always already
checked: addresses are strict IPv4 or IPv6, triplets well formed, timings consistent.
``describe()`` gives the lines ``-n`` prints, so the administrator sees the
configuration exactly as the daemon understood it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Literal

from failoverd.core.addresses import Triplet
from failoverd.core.settings import DEFAULT_LEGACY_MESSAGE, DEFAULT_PRIORITY, DetectorSettings, MasterSettings
from failoverd.core.timing import Timing, default_probe_spacing
from failoverd.core.witness import WitnessTiming

RunMode = Literal["daemon", "debug", "no_fork", "no_run"]

DEFAULT_PORT = 1694
DEFAULT_FACILITY = "daemon"
DEFAULT_SYSLOG_SOCKET = "/dev/log"
DEFAULT_MESSAGE = DEFAULT_LEGACY_MESSAGE
# Our stand-in for the original's /Library/IPFailover: hooks for an address
# live in <hook_dir>/<address>/.
DEFAULT_HOOK_DIR = Path("/etc/failoverd/hooks")
DEFAULT_HOOK_TIMEOUT = 30.0
DEFAULT_STATE_DIR = Path("/var/lib/failoverd")
DEFAULT_TRACE_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_NOTIFY_COMMAND = "NotifyFailover"
DEFAULT_CHECK_INTERVAL = 2.0
DEFAULT_CHECK_RISE = 2
DEFAULT_CHECK_FALL = 2
DEFAULT_ETCD_PREFIX = "/failoverd/"
# Where the shipped systemd units put the control sockets (their
# RuntimeDirectory=), so a daemon started by hand lands there too and
# failoverctl finds either without --socket.
DEFAULT_CONTROL_SOCKETS = {
    "failoverd": Path("/run/failoverd/failoverd.sock"),
    "heartbeatd": Path("/run/heartbeatd/heartbeatd.sock"),
}

_RUN_MODE_TEXT = {
    "daemon": "background daemon, logging to syslog",
    "debug": "foreground, logging to the terminal (-d)",
    "no_fork": "foreground, logging to syslog (-x)",
    "no_run": "check the configuration and quit (-n)",
}


@dataclass(frozen=True)
class ListenAddress:
    """Where a TCP service of the daemon listens (``--metrics-listen``): an IP literal and a port."""

    address: IPv4Address | IPv6Address
    port: int

    def __str__(self) -> str:
        if isinstance(self.address, IPv6Address):
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    @property
    def loopback(self) -> bool:
        return self.address.is_loopback


@dataclass(frozen=True)
class CheckCommand:
    """One ``--check``: the text as given and the argv it stands for (no shell)."""

    text: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class HealthChecks:
    """``--check`` and its settings (docs/checks.md): the commands, how often, how long, rise and fall."""

    commands: tuple[CheckCommand, ...] = ()
    interval: float = DEFAULT_CHECK_INTERVAL
    timeout: float | None = None
    """Longest one run may take; None: the interval."""
    rise: int = DEFAULT_CHECK_RISE
    fall: int = DEFAULT_CHECK_FALL

    @property
    def effective_timeout(self) -> float:
        return self.interval if self.timeout is None else self.timeout

    def describe(self, role: str) -> list[str]:
        if not self.commands:
            return ["health checks: none (no --check)"]
        lines = [f"health check: {c.text} (argv {list(c.argv)!r}, no shell)" for c in self.commands]
        unhealthy = "steps down (leaving)" if role == "master" else "does not take over"
        lines.append(
            f"health checks: every {self.interval:g} s, each run at most {self.effective_timeout:g} s; "
            f"failing after {self.fall} failures in a row, passing after {self.rise} passes in a row "
            f"(the first result decides); while one fails, this {role} {unhealthy}"
        )
        return lines


WitnessOutage = Literal["keep", "drop"]


@dataclass(frozen=True)
class WitnessSettings:
    """``--etcd-*`` (spec/witness.md): the etcd cluster whose grant an address needs, and how to reach it.

    ``timing`` follows the heartbeat interval (one renewal per interval, a proof valid four of
    them); ``request_timeout`` bounds each request, all endpoints together."""

    endpoints: tuple[str, ...]
    prefix: str = DEFAULT_ETCD_PREFIX
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    credentials_file: Path | None = None
    """``user:password``, readable by its owner only (read at start, never from the command line)."""
    unreachable: WitnessOutage = "keep"
    """What a holder does when etcd is unreachable: ``keep`` (keep-and-refuse-new) or ``drop``."""
    timing: WitnessTiming = field(default_factory=WitnessTiming)
    request_timeout: float = 0.1

    def describe(self) -> list[str]:
        t = self.timing
        tls = ", ".join(f"{name} {path}" for name, path in
                        (("CA", self.cacert), ("certificate", self.cert), ("key", self.key)) if path) or "no TLS files"
        return [
            f"witness: etcd at {' '.join(self.endpoints)}, prefix {self.prefix}; {tls}; credentials "
            + (f"from {self.credentials_file}" if self.credentials_file else "none"),
            f"witness timing: renew every {t.renew_period:g} s (each request at most {self.request_timeout:g} s), "
            f"a proof valid {t.validity:g} s, released {t.release_margin:g} s before; wait {t.wait_after_grant:g} s "
            f"after a grant; claim lease {t.lease_ttl} s",
            "witness unreachable: " + (
                "keep-and-refuse-new (no new claim; a holder keeps its addresses past its proof only while "
                "its peer confirms, answering a frame sent within the proof's validity, that it cannot reach etcd either)"
                if self.unreachable == "keep" else "drop (a holder removes its addresses when its proof runs out)"),
        ]


def _witness_text(witness: WitnessSettings | None) -> list[str]:
    return ["witness: none (no --etcd-endpoints)"] if witness is None else witness.describe()


def _metrics_text(listen: ListenAddress | None) -> str:
    if listen is None:
        return "metrics: off (no --metrics-listen)"
    if listen.loopback:
        return f"metrics: http://{listen}/metrics"
    return f"metrics: http://{listen}/metrics (not loopback: whoever reaches it reads the daemon's state)"


def _log_target(run_mode: RunMode, facility: str, socket: str, syslog_requested: bool) -> str:
    syslog = f"syslog facility {facility} via {socket}"
    if run_mode == "debug":
        return f"terminal and {syslog}" if syslog_requested else "terminal"
    if run_mode == "no_run":
        return f"terminal now; when run: {syslog} (terminal with -d)"
    return syslog


def _message_text(message: bytes) -> str:
    return repr(message)[1:]


@dataclass(frozen=True)
class BackupConfig:
    """failoverd: watch the master and take over its public addresses."""

    master: IPv4Address | IPv6Address
    """master_priv_addr: where the master's heartbeats come from; never acquired."""
    triplets: tuple[Triplet, ...]
    port: int = DEFAULT_PORT
    run_mode: RunMode = "daemon"
    syslog_facility: str = DEFAULT_FACILITY
    syslog_requested: bool = False
    """-L/--syslog was given: with -d, log to syslog as well as the terminal."""
    log_format: Literal["text", "json"] = "text"
    """``--log-format``: the log lines as text, or one JSON object each."""
    syslog_socket: str = DEFAULT_SYSLOG_SOCKET
    timing: Timing = field(default_factory=Timing)
    key_file: Path | None = None
    """Shared key for authenticated heartbeats; None means the original's legacy mode."""
    message: bytes = DEFAULT_MESSAGE
    """Legacy mode only: the exact datagram body expected from the master."""
    arp_probe: bool = True
    hook_dir: Path = DEFAULT_HOOK_DIR
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT
    pid_file: Path = Path("/run/failoverd.pid")
    control_socket: Path = DEFAULT_CONTROL_SOCKETS["failoverd"]
    state_dir: Path = DEFAULT_STATE_DIR
    trace_file: Path | None = None
    trace_max_bytes: int = DEFAULT_TRACE_MAX_BYTES
    notify_command: str = DEFAULT_NOTIFY_COMMAND
    keep_addresses_on_exit: bool = False
    metrics_listen: ListenAddress | None = None
    """``--metrics-listen``: serve Prometheus metrics there; None (the default) serves none."""
    checks: HealthChecks = HealthChecks()
    """``--check``: while one fails, do not take over."""
    witness: WitnessSettings | None = None
    """``--etcd-endpoints``: take over only with the etcd cluster's grant; None: no witness."""
    peers: tuple[IPv4Address | IPv6Address, ...] = ()
    """``--peer``: the other backups of the same master (spec/backups.md); empty: a pair."""
    peer_priorities: tuple[int, ...] = ()
    """``--peer ADDR=PRIORITY``: each of :attr:`peers`' configured priority, in the same order."""
    priority: int = DEFAULT_PRIORITY
    """``--priority``: higher takes over first."""
    preempt: bool = False
    """``--preempt``: take the addresses from a lower-priority backup that holds them."""

    @property
    def authenticated(self) -> bool:
        return self.key_file is not None

    @property
    def ipv6(self) -> bool:
        """Whether the heartbeat socket must reach an IPv6 host (the master or a peer): dual-stack then."""
        return self.master.version == 6 or any(p.version == 6 for p in self.peers)

    @property
    def rank(self) -> int:
        """How many configured peers outrank us (their priority is higher): the rank delay's factor."""
        return sum(1 for p in self.peer_priorities if p > self.priority)

    @property
    def interfaces(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.interface for t in self.triplets))

    def detector_settings(self) -> DetectorSettings:
        """What the detector is built with, and a trace's header records (the master names itself as the peer)."""
        return DetectorSettings(
            addresses=self.triplets,
            timing=self.timing,
            master=str(self.master),
            legacy_message=self.message,
            arp_probe=self.arp_probe,
            peer=str(self.master),
            witness=None if self.witness is None else self.witness.timing,
            peers=tuple(str(p) for p in self.peers),
            peer_priorities=self.peer_priorities,
            priority=self.priority,
            preempt=self.preempt,
        )

    def describe(self) -> list[str]:
        t = self.timing
        lines = [
            "role: backup (failoverd)",
            f"master_priv_addr: {self.master}",
            f"port: {self.port}/udp",
        ]
        for triplet in self.triplets:
            mask = f"none (/{triplet.effective_prefixlen})" if triplet.prefixlen is None else f"/{triplet.prefixlen}"
            lines.append(
                f"public address: {triplet.address} on {triplet.interface}, mask {mask}"
            )
        if self.authenticated:
            lines.append(f"heartbeats: authenticated (HMAC-SHA256), key file {self.key_file}")
        else:
            lines.append(
                f"heartbeats: legacy, unauthenticated; expected message {_message_text(self.message)}"
            )
        if self.peers:
            lines.append(
                f"several backups: priority {self.priority} (rank {self.rank}), peers "
                + " ".join(f"{p}={n}" for p, n in zip(self.peers, self.peer_priorities)) + "; "
                + ("preempts a lower holder (--preempt)" if self.preempt else "does not preempt")
            )
        lines += [
            f"timing: interval {t.interval:g} s; suspect after {t.suspect_after:g} s, "
            f"failed after {t.fail_after:g} s of silence",
            "ARP probe before takeover: "
            + (
                f"{t.probe_count} probes {t.effective_probe_spacing:g} s apart"
                if self.arp_probe
                else "off (--no-arp-probe)"
            ),
            f"gratuitous ARP after takeover: {t.garp_count}, {t.garp_spacing:g} s apart"
            + (f"; again every {t.garp_refresh:g} s while holding" if t.garp_refresh else ""),
            f"mode: {_RUN_MODE_TEXT[self.run_mode]}",
            f"log target: {_log_target(self.run_mode, self.syslog_facility, self.syslog_socket, self.syslog_requested)}"
            + (", one JSON object per line" if self.log_format == "json" else ""),
            f"hooks: {self.hook_dir}/<address>/, timeout {self.hook_timeout:g} s",
            f"notify command: {self.notify_command}",
            f"pid file: {self.pid_file}",
            f"control socket: {self.control_socket}",
            f"state directory: {self.state_dir}",
            "trace: "
            + (f"{self.trace_file} (at most {self.trace_max_bytes} bytes)" if self.trace_file else "off"),
            "on exit: " + ("keep held addresses" if self.keep_addresses_on_exit else "release held addresses"),
            _metrics_text(self.metrics_listen),
            *self.checks.describe("backup"),
            *_witness_text(self.witness),
        ]
        return lines


@dataclass(frozen=True)
class MasterConfig:
    """heartbeatd: announce the master, and (with --manage) hold its addresses."""

    targets: tuple[IPv4Address | IPv6Address, ...]
    """ip_addr arguments: the backup's address or broadcast addresses."""
    port: int = DEFAULT_PORT
    run_mode: RunMode = "daemon"
    syslog_facility: str = DEFAULT_FACILITY
    syslog_requested: bool = False
    log_format: Literal["text", "json"] = "text"
    """``--log-format``: the log lines as text, or one JSON object each."""
    syslog_socket: str = DEFAULT_SYSLOG_SOCKET
    message: bytes = DEFAULT_MESSAGE
    key_file: Path | None = None
    # Timing defaults are the backup's (core/timing.py), stated there once: the pair must agree.
    interval: float = Timing.interval
    fail_misses: int = Timing.fail_misses
    """The backup's --fail-misses: how long it takes the backup to give up on us."""
    managed: tuple[Triplet, ...] = ()
    """Addresses heartbeatd adds itself, with overlap-free failback."""
    arp_probe: bool = True
    probe_count: int = Timing.probe_count
    probe_spacing: float | None = None
    garp_count: int = Timing.garp_count
    garp_spacing: float = Timing.garp_spacing
    garp_refresh: float | None = None
    """``--garp-refresh``: announce held addresses again every so many seconds."""
    hook_dir: Path = DEFAULT_HOOK_DIR
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT
    pid_file: Path = Path("/run/heartbeatd.pid")
    control_socket: Path = DEFAULT_CONTROL_SOCKETS["heartbeatd"]
    state_dir: Path = DEFAULT_STATE_DIR
    notify_command: str = DEFAULT_NOTIFY_COMMAND
    metrics_listen: ListenAddress | None = None
    """``--metrics-listen``: serve Prometheus metrics there; None (the default) serves none."""
    checks: HealthChecks = HealthChecks()
    """``--check``: while one fails, step down (heartbeats say ``leaving``)."""
    witness: WitnessSettings | None = None
    """``--etcd-endpoints``: hold managed addresses only with the etcd cluster's grant; None: no witness."""
    backups: int = 1
    """``--backups``: how many backups the managed failback waits for (spec/backups.md)."""

    @property
    def authenticated(self) -> bool:
        return self.key_file is not None

    @property
    def backup_fail_after(self) -> float:
        """Seconds of silence after which the backup declares us failed."""
        return self.fail_misses * self.interval

    @property
    def effective_probe_spacing(self) -> float:
        return default_probe_spacing(self.interval) if self.probe_spacing is None else self.probe_spacing

    def master_settings(self) -> MasterSettings:
        """What heartbeatd's core is built with (a probe count of 0 turns the probe off)."""
        return MasterSettings(
            targets=tuple(str(t) for t in self.targets),
            interval=self.interval,
            managed=self.managed,
            backup_fail_after=self.backup_fail_after,
            legacy_message=self.message,
            arp_probe=self.arp_probe and self.probe_count > 0,
            garp_refresh=self.garp_refresh,
            witness=None if self.witness is None else self.witness.timing,
            backups=self.backups,
        )

    @property
    def interfaces(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.interface for t in self.managed))

    def describe(self) -> list[str]:
        lines = [
            "role: master (heartbeatd)",
            "targets: " + " ".join(str(a) for a in self.targets),
            f"port: {self.port}/udp",
            f"interval: {self.interval:g} s; the backup gives up after {self.backup_fail_after:g} s "
            f"({self.fail_misses} intervals)",
        ]
        if self.backups > 1:
            lines.append(f"backups: {self.backups}, each acknowledged by the heartbeats to its own address; "
                         "the managed failback waits for every one")
        if self.authenticated:
            lines.append(f"heartbeats: authenticated (HMAC-SHA256), key file {self.key_file}")
        else:
            lines.append(f"heartbeats: legacy, unauthenticated; message {_message_text(self.message)}")
        if self.managed:
            for triplet in self.managed:
                mask = f"none (/{triplet.effective_prefixlen})" if triplet.prefixlen is None else f"/{triplet.prefixlen}"
                lines.append(f"managed address: {triplet.address} on {triplet.interface}, mask {mask}")
            lines += [
                "ARP probe before acquiring: "
                + (
                    f"{self.probe_count} probes {self.effective_probe_spacing:g} s apart"
                    if self.arp_probe
                    else "off (--no-arp-probe)"
                ),
                f"gratuitous ARP after acquiring: {self.garp_count}, {self.garp_spacing:g} s apart"
                + (f"; again every {self.garp_refresh:g} s while holding" if self.garp_refresh else ""),
            ]
        else:
            lines.append("managed addresses: none (public addresses are configured outside heartbeatd)")
        lines += [
            f"mode: {_RUN_MODE_TEXT[self.run_mode]}",
            f"log target: {_log_target(self.run_mode, self.syslog_facility, self.syslog_socket, self.syslog_requested)}"
            + (", one JSON object per line" if self.log_format == "json" else ""),
            f"hooks: {self.hook_dir}/<address>/, timeout {self.hook_timeout:g} s",
            f"notify command: {self.notify_command}",
            f"pid file: {self.pid_file}",
            f"control socket: {self.control_socket}",
            f"state directory: {self.state_dir}",
            _metrics_text(self.metrics_listen),
            *self.checks.describe("master"),
            *_witness_text(self.witness),
        ]
        return lines

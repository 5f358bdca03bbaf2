"""What can be checked on this host before a daemon starts.

Two uses: at every start the fatal host problems (an interface this computer
does not have, an unusable key file) stop the program with exit 78 before it
moves to the background; with ``-n`` every check runs and is printed, one line
each, after the configuration as understood.

A check ends ``ok``, ``warn`` (worth knowing, does not stop the daemon) or
``FAIL``. ``-n`` exits 0 only when nothing failed. Running ``-n`` as an
ordinary user is allowed and only warns, because ``-n`` validates a
configuration, not the account that runs it; the daemons themselves refuse to
run without root.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import Literal

from failoverd import __version__
from failoverd.cli import logsetup
from failoverd.cli.config import BackupConfig, HealthChecks, MasterConfig, WitnessSettings
from failoverd.cli.exitcodes import ConfigError
from failoverd.core.addresses import Triplet
from failoverd.system.keyfile import KeyFileError, read_key

INVALID_INTERFACE = "CNode: invalid interface name"

_IFF_UP = 0x1
_IFF_LOWER_UP = 0x10000

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Check:
    status: Status
    text: str


@dataclass(frozen=True)
class HostView:
    """The links and the IPv4 and IPv6 addresses of the current network namespace."""

    links: dict[str, int]
    """interface name → flags"""
    addresses: dict[IPv4Address | IPv6Address, str]
    """address → interface it is configured on"""
    broadcasts: dict[IPv4Address, str] = field(default_factory=dict)
    """the broadcast address of each IPv4 network configured here → its interface"""

    @classmethod
    def read(cls) -> HostView:
        # Imported here: pyroute2 is slow to import and only -n needs it.
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            links = {link.get("ifname"): link["flags"] for link in ipr.get_links()}
            names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
            addresses = {}
            broadcasts: dict[IPv4Address, str] = {}
            for msg in ipr.get_addr():
                if msg["family"] not in (socket.AF_INET, socket.AF_INET6):
                    continue
                local = msg.get("local") or msg.get("address")
                name = names.get(msg["index"], f"index {msg['index']}")
                if local is not None:
                    addresses[ip_address(local)] = name
                if msg["family"] == socket.AF_INET and local is not None and msg["prefixlen"] <= 30:
                    network = ip_network(f"{local}/{msg['prefixlen']}", strict=False)
                    broadcasts[IPv4Address(network.broadcast_address)] = name
                    if msg.get("broadcast"):
                        broadcasts[IPv4Address(msg.get("broadcast"))] = name
        return cls(links, addresses, broadcasts)


# --- the checks that stop every start ----------------------------------------


def require_interfaces(triplets: Iterable[Triplet], role: str) -> None:
    """Raise ConfigError (the original's "CNode: invalid interface name") for
    the first triplet whose interface does not exist in this namespace."""
    for triplet in triplets:
        try:
            socket.if_nametoindex(triplet.interface)
        except (OSError, ValueError):
            raise ConfigError(
                f"{INVALID_INTERFACE}: {role} '{triplet}' "
                f"(no interface {triplet.interface!r} on this host)"
            ) from None


def key_file_problem(path: Path) -> str | None:
    """Why the key file cannot be used, or None: the runtime's own rule, which SIGHUP applies too."""
    try:
        read_key(path)
    except KeyFileError as error:
        return str(error)
    return None


def require_key_file(path: Path | None) -> None:
    if path is not None:
        problem = key_file_problem(path)
        if problem is not None:
            raise ConfigError(problem)


def broadcast_target_problems(config: MasterConfig, host: HostView) -> list[str]:
    """Why each target cannot be one of several backups' addresses: it is the broadcast address of a network here."""
    if config.backups == 1:
        return []
    return [
        f"--backups {config.backups} with ip_addr {target}: it is the broadcast address of {where}'s network, "
        "and a heartbeat acknowledges one backup: name each backup's unicast address"
        for target in config.targets
        if isinstance(target, IPv4Address) and (where := host.broadcasts.get(target)) is not None
    ]


def _refuse_first_problem(option: str, checked: str, problems_here: Callable[[HostView], list[str]]) -> None:
    """Raise ConfigError with the first of ``problems_here(this host)``: start-up refuses what ``-n`` fails."""
    try:
        host = HostView.read()
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read this host's networks over netlink to check that {checked}: "
                          f"{exc}") from None
    problems = problems_here(host)
    if problems:
        raise ConfigError(problems[0])


def require_unicast_targets(config: MasterConfig) -> None:
    """With several backups, refuse a target that is a broadcast address of one of this host's networks."""
    if config.backups > 1:
        _refuse_first_problem(f"--backups {config.backups}", "no ip_addr is a broadcast address",
                              lambda host: broadcast_target_problems(config, host))


def peer_problem(peer: IPv4Address | IPv6Address, host: HostView) -> str | None:
    """Why a ``--peer`` cannot be another backup, or None: it is one of this host's addresses, or the
    broadcast address of a network here (our own peer frames would come back to us, and reach the master)."""
    address = ip_address(str(peer).partition("%")[0])
    if (where := host.addresses.get(address)) is not None:
        return f"--peer {peer} is configured here on {where}; list the other backups, not this one"
    if isinstance(address, IPv4Address) and (where := host.broadcasts.get(address)) is not None:
        return (f"--peer {peer}: it is the broadcast address of {where}'s network; "
                "name each other backup's unicast address")
    return None


def peer_problems(config: BackupConfig, host: HostView) -> list[str]:
    """``peer_problem`` of every ``--peer``, in order, the unproblematic left out."""
    return [problem for peer in config.peers if (problem := peer_problem(peer, host)) is not None]


def require_unicast_peers(config: BackupConfig) -> None:
    """With ``--peer``, refuse one that is this host or a broadcast address of one of its networks."""
    if config.peers:
        _refuse_first_problem("--peer", "no peer is this host or a broadcast address",
                              lambda host: peer_problems(config, host))


# --- the -n checks -------------------------------------------------------------


def _interface_checks(names: Iterable[str], host: HostView) -> list[Check]:
    checks = []
    for name in names:
        flags = host.links.get(name)
        if flags is None:
            checks.append(Check("FAIL", f"{INVALID_INTERFACE}: no interface {name!r} on this host"))
            continue
        checks.append(Check("ok", f"interface {name} exists"))
        if not flags & _IFF_UP:
            checks.append(Check("FAIL", f"interface {name} is down (ip link set {name} up)"))
        elif not flags & _IFF_LOWER_UP:
            checks.append(Check("warn", f"interface {name} is up but has no carrier"))
        else:
            checks.append(Check("ok", f"interface {name} is up"))
    return checks


def _port_check(port: int) -> Check:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return Check("FAIL", f"port {port}/udp is already in use here (another failoverd or heartbeatd?)")
        if exc.errno == errno.EACCES:
            return Check("FAIL", f"port {port}/udp: permission denied (ports below 1024 need root)")
        return Check("FAIL", f"port {port}/udp cannot be bound: {exc.strerror}")
    finally:
        sock.close()
    return Check("ok", f"port {port}/udp is free")


def _not_configured_checks(triplets: Iterable[Triplet], host: HostView, why: str) -> list[Check]:
    checks = []
    for triplet in triplets:
        where = host.addresses.get(triplet.address)
        if where is None:
            checks.append(Check("ok", f"{triplet.address} is not configured on this host"))
        else:
            checks.append(
                Check("FAIL", f"{triplet.address} is already configured on {where}; {why}")
            )
    return checks


def _safe_owner_problem(path: Path, info: os.stat_result) -> str | None:
    if info.st_uid != 0:
        return f"{path} is owned by uid {info.st_uid}, not root; hooks run as root"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by group or others; hooks run as root (chmod go-w {path})"
    return None


def _hook_checks(hook_dir: Path, addresses: Iterable[IPv4Address | IPv6Address]) -> list[Check]:
    try:
        info = hook_dir.stat()
    except FileNotFoundError:
        return [Check("ok", f"hook directory {hook_dir} is absent: no hooks will run")]
    except PermissionError:
        return [_unreadable(hook_dir)]
    except OSError as exc:
        return [Check("FAIL", f"hook directory {hook_dir}: {exc.strerror}")]
    if not stat.S_ISDIR(info.st_mode):
        return [Check("FAIL", f"hook directory {hook_dir} is not a directory")]
    problem = _safe_owner_problem(hook_dir, info)
    checks = [Check("FAIL", problem) if problem else Check("ok", f"hook directory {hook_dir} is safe")]
    for address in addresses:
        directory = hook_dir / str(address)
        try:
            info = directory.stat()
        except FileNotFoundError:
            checks.append(Check("ok", f"no hooks for {address}"))
            continue
        except PermissionError:
            checks.append(_unreadable(directory))
            continue
        except OSError as exc:
            checks.append(Check("FAIL", f"{directory}: {exc.strerror}"))
            continue
        problem = _safe_owner_problem(directory, info)
        if problem:
            checks.append(Check("FAIL", problem))
            continue
        hooks = []
        try:
            entries = sorted(directory.iterdir())
        except PermissionError:
            checks.append(_unreadable(directory))
            continue
        for entry in entries:
            entry_info = entry.lstat()
            problem = _safe_owner_problem(entry, entry_info)
            if problem:
                checks.append(Check("FAIL", problem))
            elif stat.S_ISREG(entry_info.st_mode) and entry_info.st_mode & stat.S_IXUSR:
                hooks.append(entry.name)
            else:
                checks.append(Check("warn", f"{entry} is not an executable file and will not run"))
        checks.append(Check("ok", f"hooks for {address}: {', '.join(hooks) if hooks else 'none'}"))
    return checks


def _health_check_checks(checks: HealthChecks) -> list[Check]:
    """Each ``--check``'s program: there, and passing the rules hooks follow (docs/checks.md)."""
    if not checks.commands:
        return []
    # Imported here: it brings Trio, which the other checks do not need.
    from failoverd.system.checks import locate, program_problem

    out = []
    for command in checks.commands:
        problem = program_problem(command)
        if problem is None:
            out.append(Check("ok", f"health check {command.text!r} runs {locate(command.argv[0])}"))
        else:
            out.append(Check("FAIL", f"health check {command.text!r} cannot run, so it would always fail: {problem}"))
    if checks.effective_timeout > checks.interval:
        out.append(Check("warn", f"--check-timeout {checks.effective_timeout:g} s is longer than --check-interval "
                                 f"{checks.interval:g} s: a slow run delays the next one"))
    return out


def _witness_checks(witness: WitnessSettings | None) -> list[Check]:
    """The etcd witness's files: TLS files readable, the credentials file as the client reads it.

    Whether etcd answers is not checked here: -n must not depend on the cluster being up."""
    if witness is None:
        return []
    from failoverd.system.witness import WitnessConfigError, read_credentials  # httpx: only with a witness

    checks = []
    for option, path in (("--etcd-cacert", witness.cacert), ("--etcd-cert", witness.cert), ("--etcd-key", witness.key)):
        if path is None:
            continue
        try:
            with open(path, "rb") as handle:
                handle.read(1)
            checks.append(Check("ok", f"{option} {path} is readable"))
        except OSError as exc:
            checks.append(Check("FAIL", f"{option} {path}: {exc.strerror or exc}"))
    if witness.credentials_file is not None:
        try:
            read_credentials(witness.credentials_file)
            checks.append(Check("ok", f"etcd credentials file {witness.credentials_file} is usable"))
        except WitnessConfigError as exc:
            checks.append(Check("FAIL", str(exc)))
    return checks


def _peer_checks(
    peers: Iterable[tuple[IPv4Address | IPv6Address, int]], priority: int, host: HostView
) -> list[Check]:
    """``--peer ADDR=PRIORITY``: each is another host (not one of ours), and a link-local one's interface
    exists here; the ok line says its priority against ours (``priority``)."""
    checks = []
    for peer, theirs in peers:
        scope = str(peer).partition("%")[2]
        if (problem := peer_problem(peer, host)) is not None:
            checks.append(Check("FAIL", problem))
        elif scope and scope not in host.links:
            checks.append(Check("FAIL", f"--peer {peer}: no interface {scope} here"))
        else:
            order = "takes over before us" if theirs > priority else "takes over after us"
            checks.append(Check("ok", f"peer backup {peer}, priority {theirs} ({order}; ours {priority})"))
    return checks


def _syslog_check(path: str) -> Check:
    problem = logsetup.syslog_problem(path)
    if problem is not None:
        return Check("warn", f"{problem}; background and -x modes would fail to start (-d works)")
    return Check("ok", f"syslog socket {path} accepts messages")


def _state_dir_check(path: Path) -> Check:
    try:
        info = path.stat()
    except FileNotFoundError:
        return Check("ok", f"state directory {path} will be created")
    except PermissionError:
        return _unreadable(path)
    except OSError as exc:
        return Check("FAIL", f"state directory {path}: {exc.strerror}")
    if not stat.S_ISDIR(info.st_mode):
        return Check("FAIL", f"state directory {path} exists but is not a directory")
    return Check("ok", f"state directory {path} exists")


def _unreadable(path: Path) -> Check:
    """A path this (non-root) user may not look at; root, who runs the daemon, can."""
    if os.geteuid() == 0:
        return Check("FAIL", f"{path}: permission denied")
    return Check("warn", f"{path}: cannot be checked without root (permission denied)")


def _privilege_check(program: str) -> Check:
    if os.geteuid() == 0:
        return Check("ok", "running as root")
    return Check("warn", f"not running as root; {program} itself must run as root")


def run_checks(config: BackupConfig | MasterConfig) -> list[Check]:
    program = "failoverd" if isinstance(config, BackupConfig) else "heartbeatd"
    checks = [_privilege_check(program)]
    try:
        host = HostView.read()
    except OSError as exc:
        return checks + [Check("FAIL", f"cannot read this host's interfaces over netlink: {exc}")]
    if isinstance(config, BackupConfig):
        checks += _interface_checks(config.interfaces, host)
        where = host.addresses.get(config.master)
        if where is not None:
            checks.append(
                Check("FAIL", f"master_priv_addr {config.master} is configured here on {where}; "
                      "failoverd runs on the backup, not on the master")
            )
        checks += _not_configured_checks(
            config.triplets, host, "failoverd would fight it; remove it from the static configuration"
        )
        checks += _peer_checks(zip(config.peers, config.peer_priorities), config.priority, host)
        addresses = [t.address for t in config.triplets]
    else:
        checks += _interface_checks(config.interfaces, host)
        checks += _not_configured_checks(
            config.managed, host, "heartbeatd adds managed addresses itself; remove it from the static configuration"
        )
        addresses = [t.address for t in config.managed]
        checks += [Check("FAIL", problem) for problem in broadcast_target_problems(config, host)]
    checks.append(_port_check(config.port))
    if config.key_file is None:
        checks.append(Check("warn", "no --key-file: heartbeats are not authenticated (legacy mode)"))
    else:
        problem = key_file_problem(config.key_file)
        if problem is None:
            checks.append(Check("ok", f"key file {config.key_file} is usable"))
        elif problem.endswith("Permission denied"):
            checks.append(_unreadable(config.key_file))
        else:
            checks.append(Check("FAIL", problem))
    checks += _hook_checks(config.hook_dir, addresses)
    checks += _health_check_checks(config.checks)
    checks += _witness_checks(config.witness)
    checks.append(_state_dir_check(config.state_dir))
    checks.append(_syslog_check(config.syslog_socket))
    return checks


def report(config: BackupConfig | MasterConfig) -> tuple[str, bool]:
    """The -n output, and whether every check passed."""
    program = "failoverd" if isinstance(config, BackupConfig) else "heartbeatd"
    checks = run_checks(config)
    lines = [f"{program} {__version__}: configuration as understood"]
    lines += [f"  {line}" for line in config.describe()]
    lines.append("checks on this host:")
    lines += [f"  {check.status:<5} {check.text}" for check in checks]
    failed = sum(check.status == "FAIL" for check in checks)
    warned = sum(check.status == "warn" for check in checks)
    if failed:
        lines.append(f"result: {failed} check{'s' if failed > 1 else ''} failed")
    else:
        lines.append(f"result: configuration OK ({warned} warning{'' if warned == 1 else 's'})")
    return "\n".join(lines) + "\n", failed == 0

"""The lab's fixed shape: which hosts sit on which LAN, and how everything is named and addressed.

Pure data and pure functions: nothing here touches the system. Every other lab module asks this one
for a name or an address, so the plan lives in exactly one place.

    private LAN  10.<x>.1.0/24   master .1   backup .2  (backup2 .3)
    public LAN   10.<x>.2.0/24   master .1   backup .2  (backup2 .3)   client .10   virtual IP .100 (not configured)

A lab has one backup host by default; ``Plan(..., backups=2)`` (``Lab(backups=2)``) adds a second,
``backup2``, on both LANs, for several backups of one master (spec/backups.md). The names and
addresses of the hosts every lab has do not depend on it.

A lab built with IPv6 (``Lab(ipv6=True)``) also has, on each LAN, the unique-local prefix
``fd00:<x>:<lan octet>::/64`` with the same host numbers (``fd00:<x>:2::100`` the IPv6 virtual IP),
and each host interface's link-local address, derived from its MAC (EUI-64).

Namespace names are ``fo<6 hex>-<role>``; the pattern is strict so that ``sweep`` can never mistake
somebody else's namespace for one of ours.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass

BACKUP_HOSTS: tuple[str, ...] = ("backup", "backup2")
"""The backup hosts a lab may have, in order: a lab with ``backups=n`` has the first n."""
MAX_BACKUPS = len(BACKUP_HOSTS)
LANS: tuple[str, ...] = ("priv", "pub")
WIRE = "wire"
# Each host's last address octet, the same on every LAN it is on (the client is on the public one only).
HOST_OCTET: dict[str, int] = {"master": 1, "backup": 2, "backup2": 3, "client": 10}
PUBLIC_ONLY: tuple[str, ...] = ("client",)


def hosts_of(backups: int) -> tuple[str, ...]:
    """A lab's hosts when it has ``backups`` backup hosts."""
    check_backups(backups)
    return ("master", *BACKUP_HOSTS[:backups], "client")


def members_of(backups: int) -> dict[str, dict[str, int]]:
    """Which hosts each LAN joins in a lab with ``backups`` backup hosts, and each one's last octet."""
    hosts = hosts_of(backups)
    return {
        "priv": {h: HOST_OCTET[h] for h in hosts if h not in PUBLIC_ONLY},
        "pub": {h: HOST_OCTET[h] for h in hosts},
    }


def check_backups(backups: object) -> int:
    if not isinstance(backups, int) or isinstance(backups, bool) or not 1 <= backups <= MAX_BACKUPS:
        raise TopologyError(f"a lab has 1 to {MAX_BACKUPS} backup hosts, not {backups!r}")
    return backups


HOSTS: tuple[str, ...] = hosts_of(1)
"""The hosts of a lab with one backup (the default): master, backup, client."""
MEMBERS: dict[str, dict[str, int]] = members_of(1)
"""The LANs' members in a lab with one backup (the default)."""
KNOWN_HOSTS: tuple[str, ...] = hosts_of(MAX_BACKUPS)
"""Every host name some lab may have."""
KNOWN_MEMBERS: dict[str, dict[str, int]] = members_of(MAX_BACKUPS)
ROLES: tuple[str, ...] = (*KNOWN_HOSTS, WIRE)
LAN_OCTET: dict[str, int] = {"priv": 1, "pub": 2}
VIP_OCTET = 100
PREFIX_LEN = 24
PREFIX_LEN6 = 64

LAB_ID_RE = re.compile(r"^fo[0-9a-f]{6}$")
# The etcd witness cluster's namespaces (failoverd/lab/etcd.py) are a lab's too: members,
# the client hosts that use them, and the bridge between them.
NAMESPACE_RE = re.compile(r"^(?P<lab>fo[0-9a-f]{6})-(?P<role>master|backup|backup2|client|wire|etcd[1-9]|peer[1-9]|ewire)$")

# 10.<x>.0.0/16 per lab; x is chosen from this range so labs that run at once never share one.
SUBNET_RANGE = range(16, 250)


class TopologyError(ValueError):
    """A host, LAN or lab name that the lab does not have."""


def new_lab_id() -> str:
    return "fo" + secrets.token_hex(3)


def check_lab_id(lab_id: str) -> str:
    if not LAB_ID_RE.match(lab_id):
        raise TopologyError(f"{lab_id!r} is not a lab id (expected 'fo' and 6 hex digits, e.g. fo1a2b3c)")
    return lab_id


def check_host(host: str) -> str:
    """A host name some lab may have (whether this one has it is :meth:`Plan.check_host`'s business)."""
    if host not in KNOWN_HOSTS:
        raise TopologyError(f"unknown host {host!r}; the lab's hosts are {', '.join(KNOWN_HOSTS)}")
    return host


def check_lan(lan: str) -> str:
    if lan not in LANS:
        raise TopologyError(f"unknown LAN {lan!r}; the lab's LANs are {', '.join(LANS)}")
    return lan


def check_member(lan: str, host: str) -> str:
    check_lan(lan)
    check_host(host)
    if host not in KNOWN_MEMBERS[lan]:
        raise TopologyError(
            f"host {host!r} is not on the {lan} LAN (members: {', '.join(KNOWN_MEMBERS[lan])})"
        )
    return host


def namespace(lab_id: str, role: str) -> str:
    if role not in ROLES:
        raise TopologyError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return f"{lab_id}-{role}"


def lab_of_namespace(name: str) -> str | None:
    """The lab id a namespace name belongs to, or None if it is not one of ours."""
    match = NAMESPACE_RE.match(name)
    return match.group("lab") if match else None


def host_interface(lan: str) -> str:
    """The interface name inside a host namespace: ``priv0`` or ``pub0``."""
    return f"{check_lan(lan)}0"


def wire_port(lan: str, host: str) -> str:
    """The peer of a host's interface, inside the wire namespace (at most 12 characters)."""
    return f"{check_member(lan, host)}-{lan}"


@dataclass(frozen=True)
class Plan:
    """Every name and address of one lab."""

    lab_id: str
    subnet: int
    backups: int = 1

    def __post_init__(self) -> None:
        check_lab_id(self.lab_id)
        if self.subnet not in SUBNET_RANGE:
            raise TopologyError(
                f"subnet octet {self.subnet} outside {SUBNET_RANGE.start}..{SUBNET_RANGE.stop - 1}"
            )
        check_backups(self.backups)

    @property
    def hosts(self) -> tuple[str, ...]:
        return hosts_of(self.backups)

    @property
    def backup_hosts(self) -> tuple[str, ...]:
        return BACKUP_HOSTS[:self.backups]

    @property
    def members(self) -> dict[str, dict[str, int]]:
        return members_of(self.backups)

    def check_host(self, host: str) -> str:
        """A host of this lab (a known name this lab was built without is refused, saying how to get it)."""
        check_host(host)
        if host not in self.hosts:
            raise TopologyError(f"this lab has no host {host!r}: it has {self.backups} backup host(s) "
                                f"(build it with Lab(backups={BACKUP_HOSTS.index(host) + 1}))")
        return host

    def check_member(self, lan: str, host: str) -> str:
        check_member(lan, host)
        self.check_host(host)
        return host

    def ns(self, role: str) -> str:
        return namespace(self.lab_id, role)

    def address(self, host: str, lan: str) -> str:
        self.check_member(lan, host)
        return f"10.{self.subnet}.{LAN_OCTET[lan]}.{HOST_OCTET[host]}"

    def network(self, lan: str) -> str:
        return f"10.{self.subnet}.{LAN_OCTET[check_lan(lan)]}.0/{PREFIX_LEN}"

    @property
    def vip(self) -> str:
        return f"10.{self.subnet}.{LAN_OCTET['pub']}.{VIP_OCTET}"

    def address6(self, host: str, lan: str) -> str:
        """The host's unique-local IPv6 address on ``lan`` (numbers written as the IPv4 plan's, in hex digits)."""
        self.check_member(lan, host)
        return f"fd00:{self.subnet}:{LAN_OCTET[lan]}::{HOST_OCTET[host]}"

    def network6(self, lan: str) -> str:
        return f"fd00:{self.subnet}:{LAN_OCTET[check_lan(lan)]}::/{PREFIX_LEN6}"

    @property
    def vip6(self) -> str:
        return f"fd00:{self.subnet}:{LAN_OCTET['pub']}::{VIP_OCTET}"

    def link_local(self, host: str, lan: str) -> str:
        """The link-local address the kernel derives from the host's MAC on ``lan`` (RFC 4291 appendix A)."""
        mac = bytes.fromhex(self.mac(host, lan).replace(":", ""))
        eui64 = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:]
        return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + eui64))

    def mac(self, host: str, lan: str) -> str:
        # Locally administered, and readable: the last three bytes spell the host's address.
        self.check_member(lan, host)
        return f"02:00:0a:{self.subnet:02x}:{LAN_OCTET[lan]:02x}:{HOST_OCTET[host]:02x}"

    def links(self) -> list[tuple[str, str]]:
        """Every (lan, host) attachment."""
        return [(lan, host) for lan in LANS for host in self.members[lan]]

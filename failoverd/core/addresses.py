"""The address vocabulary of the original, and its IPv6 counterpart: strict
dotted-decimal IPv4, IPv6 (RFC 4291 text forms, with a ``%scope`` where an
address needs one), and ``interface:pub_addr[/mask]`` triplets.

The original only checks that addresses are "properly formed"; we are stricter
than ``inet_aton`` on purpose: ``10.1`` or ``0x0a.0.0.1`` are accepted by the C
library but are almost always a typo in a failover configuration, and a typo
here means the wrong host answers for an address.

IPv6 is written as RFC 4291 allows (``2001:DB8:0::10`` is ``2001:db8::10``) and
shown in RFC 5952's canonical form; what is refused is what names a
different thing than it seems to: an IPv4-mapped address (``::ffff:10.0.0.1``
is the IPv4 address, so write that), and a ``%scope`` where it means nothing.
A triplet's interface ends at its first colon (interface names cannot hold
one), so ``eth0:2001:db8::10/64`` is interface ``eth0``, address
``2001:db8::10``, mask 64. A triplet never has a ``%scope``: its interface is
the scope. A single address (``master_priv_addr``, a heartbeat target) that
is link-local needs one, as ``fe80::1%eth1``: without it the kernel cannot
know which link the address is on.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import total_ordering

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Exactly four decimal octets, no sign, no spaces; leading zeros are refused
# because some tools read them as octal.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
# Hex groups, "::" and an embedded dotted quad: the characters of RFC 4291's
# text forms. ipaddress checks the grammar; this keeps out what it would
# tolerate around it (whitespace, signs, non-ASCII digits).
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
# Linux interface names: 1..15 bytes, no '/', ':', whitespace (IFNAMSIZ - 1).
_IFNAME = re.compile(r"[^/:%\s]{1,15}")
_MASK = re.compile(r"[0-9]{1,3}")

INVALID_ADDRESS = "CNode: invalid IP address"
INVALID_PAIR = "Invalid interface / IP address pair"

MAX_PREFIXLEN = {4: 32, 6: 128}


class AddressError(ValueError):
    """An argument that is not a properly formed address or triplet.

    ``diagnostic`` is the original's wording; ``argument`` the offending text.
    """

    def __init__(self, diagnostic: str, argument: str, detail: str = "") -> None:
        self.diagnostic = diagnostic
        self.argument = argument
        self.detail = detail
        text = f"{diagnostic}: {argument!r}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)


def parse_ipv4(text: str) -> ipaddress.IPv4Address:
    """Parse strict dotted-decimal IPv4 or raise :class:`AddressError`."""
    if not isinstance(text, str) or _IPV4.fullmatch(text) is None:
        raise AddressError(INVALID_ADDRESS, str(text), "expected four decimal octets, e.g. 10.0.0.1")
    return ipaddress.IPv4Address(text)


def needs_scope(address: ipaddress.IPv6Address) -> bool:
    """Is ``address`` meaningful only on one link (link-local unicast, or multicast of link scope or less)?"""
    return address.is_link_local or (address.is_multicast and (int(address) >> 112) & 0xF <= 2)


def parse_ipv6(text: str, *, scoped: bool = False) -> ipaddress.IPv6Address:
    """Parse an IPv6 address or raise :class:`AddressError`.

    With ``scoped`` the address may, and if link-local must, end in
    ``%interface`` (the scope is kept in the result's ``scope_id``); without
    it a ``%`` is refused.
    """
    if not isinstance(text, str):
        raise AddressError(INVALID_ADDRESS, str(text), "expected an IPv6 address, e.g. 2001:db8::10")
    body, percent, scope = text.partition("%")
    if percent and not scoped:
        raise AddressError(INVALID_ADDRESS, text, "no %scope here: the interface is given by the triplet")
    if _IPV6.fullmatch(body) is None or ":" not in body:
        raise AddressError(INVALID_ADDRESS, text, "expected an IPv6 address, e.g. 2001:db8::10")
    try:
        address = ipaddress.IPv6Address(body)
    except ValueError:
        raise AddressError(INVALID_ADDRESS, text, "expected an IPv6 address, e.g. 2001:db8::10") from None
    if address.ipv4_mapped is not None:
        raise AddressError(INVALID_ADDRESS, text, f"an IPv4-mapped address: write {address.ipv4_mapped}")
    if percent:
        if not _interface_name_ok(scope):
            raise AddressError(INVALID_ADDRESS, text, f"the scope {scope!r} is not an interface name")
        if not needs_scope(address):
            raise AddressError(INVALID_ADDRESS, text, "a %scope is for link-local addresses (fe80::/10) only")
        return ipaddress.IPv6Address(f"{address}%{scope}")
    if scoped and needs_scope(address):
        raise AddressError(INVALID_ADDRESS, text, f"a link-local address needs its interface, e.g. {address}%eth1")
    return address


def parse_ip(text: str, *, scoped: bool = False) -> IPAddress:
    """IPv4 (strict dotted decimal) or IPv6 (:func:`parse_ipv6`), told apart by a colon."""
    if isinstance(text, str) and ":" in text:
        return parse_ipv6(text, scoped=scoped)
    return parse_ipv4(text)


def _interface_name_ok(name: str) -> bool:
    return (
        _IFNAME.fullmatch(name) is not None
        and name not in (".", "..")
        and "\x00" not in name
        # IFNAMSIZ counts bytes, not characters.
        and len(name.encode("utf-8", "surrogatepass")) <= 15
    )


@total_ordering
@dataclass(frozen=True, order=False)
class Triplet:
    """One of the master's public addresses and where the backup puts it.

    ``prefixlen`` is ``None`` when the mask was left blank, which ProcessFailover
    treats as a host route (/32, or /128 for IPv6: an alias in the interface's
    own subnet).

    Triplets sort by interface, then IPv4 before IPv6, then address and mask,
    so a mixed list has one order (``ipaddress`` refuses to compare families).
    """

    interface: str
    address: IPAddress
    prefixlen: int | None = None

    @property
    def version(self) -> int:
        return self.address.version

    @property
    def effective_prefixlen(self) -> int:
        return MAX_PREFIXLEN[self.address.version] if self.prefixlen is None else self.prefixlen

    def _key(self) -> tuple[str, int, int, int]:
        return (self.interface, self.address.version, int(self.address), -1 if self.prefixlen is None else self.prefixlen)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Triplet):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        mask = "" if self.prefixlen is None else f"/{self.prefixlen}"
        return f"{self.interface}:{self.address}{mask}"


def parse_triplet(text: str) -> Triplet:
    """Parse ``interface:pub_addr[/mask]`` or raise :class:`AddressError`.

    The interface ends at the first colon; an address with a colon of its own
    is IPv6. A malformed shape gives the original's "Invalid interface / IP
    address pair"; a well-shaped triplet with a bad address gives "CNode:
    invalid IP address", so the administrator is told which part is wrong.
    """
    if not isinstance(text, str) or ":" not in text:
        raise AddressError(INVALID_PAIR, str(text), "expected interface:address[/mask]")
    interface, rest = text.split(":", 1)
    if not _interface_name_ok(interface):
        raise AddressError(INVALID_PAIR, text, "bad interface name")
    if rest.count("/") > 1:
        raise AddressError(INVALID_PAIR, text, "more than one '/'")
    addr_text, slash, mask_text = rest.partition("/")
    version = 6 if ":" in addr_text else 4
    prefixlen: int | None = None
    if slash:
        limit = MAX_PREFIXLEN[version]
        if not _mask_ok(mask_text, limit):
            raise AddressError(INVALID_PAIR, text, f"mask must be an integer 0..{limit}")
        prefixlen = int(mask_text)
    try:
        address: IPAddress = parse_ipv6(addr_text) if version == 6 else parse_ipv4(addr_text)
    except AddressError as exc:
        raise AddressError(INVALID_ADDRESS, text, exc.detail) from None
    return Triplet(interface, address, prefixlen)


def _mask_ok(text: str, limit: int) -> bool:
    return _MASK.fullmatch(text) is not None and int(text) <= limit and not (len(text) > 1 and text[0] == "0")


def names(addresses: Iterable[Triplet]) -> str:
    """Addresses for a log line, a mail or a report: ``eth0:10.0.0.1/24, eth1:10.0.0.2``; ``none`` when empty.

    The one spelling of an address list everywhere an operator reads one, so
    a log line, a hook's summary and a replay's timeline can be grepped alike;
    in :class:`Triplet` order (by interface, IPv4 first, numerically), the
    order the hooks run in.
    """
    return ", ".join(str(a) for a in sorted(addresses)) or "none"

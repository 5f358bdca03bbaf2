"""The address vocabulary of the original: strict dotted-decimal IPv4 and
``interface:pub_addr[/mask]`` triplets.

The original only checks that addresses are "properly formed"; we are stricter
than ``inet_aton`` on purpose: ``10.1`` or ``0x0a.0.0.1`` are accepted by the C
library but are almost always a typo in a failover configuration, and a typo
here means the wrong host answers for an address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable

# Exactly four decimal octets, no sign, no spaces; leading zeros are refused
# because some tools read them as octal.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
# Linux interface names: 1..15 bytes, no '/', ':', whitespace (IFNAMSIZ - 1).
_IFNAME = re.compile(r"[^/:\s]{1,15}")
_MASK = re.compile(r"[0-9]{1,2}")

INVALID_ADDRESS = "CNode: invalid IP address"
INVALID_PAIR = "Invalid interface / IP address pair"


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


@dataclass(frozen=True, order=True)
class Triplet:
    """One of the master's public addresses and where the backup puts it.

    ``prefixlen`` is ``None`` when the mask was left blank, which ProcessFailover
    treats as /32 (an alias in the interface's own subnet).
    """

    interface: str
    address: ipaddress.IPv4Address
    prefixlen: int | None = None

    @property
    def effective_prefixlen(self) -> int:
        return 32 if self.prefixlen is None else self.prefixlen

    def __str__(self) -> str:
        mask = "" if self.prefixlen is None else f"/{self.prefixlen}"
        return f"{self.interface}:{self.address}{mask}"


def parse_triplet(text: str) -> Triplet:
    """Parse ``interface:pub_addr[/mask]`` or raise :class:`AddressError`.

    A malformed shape gives the original's "Invalid interface / IP address
    pair"; a well-shaped triplet with a bad address gives "CNode: invalid IP
    address", so the administrator is told which part is wrong.
    """
    if not isinstance(text, str) or text.count(":") != 1:
        raise AddressError(INVALID_PAIR, str(text), "expected interface:address[/mask]")
    interface, rest = text.split(":")
    if (
        _IFNAME.fullmatch(interface) is None
        or interface in (".", "..")
        or "\x00" in interface
        # IFNAMSIZ counts bytes, not characters.
        or len(interface.encode("utf-8", "surrogatepass")) > 15
    ):
        raise AddressError(INVALID_PAIR, text, "bad interface name")
    if rest.count("/") > 1:
        raise AddressError(INVALID_PAIR, text, "more than one '/'")
    addr_text, slash, mask_text = rest.partition("/")
    prefixlen: int | None = None
    if slash:
        if _MASK.fullmatch(mask_text) is None or int(mask_text) > 32 or (
            len(mask_text) > 1 and mask_text[0] == "0"
        ):
            raise AddressError(INVALID_PAIR, text, "mask must be an integer 0..32")
        prefixlen = int(mask_text)
    try:
        address = parse_ipv4(addr_text)
    except AddressError as exc:
        raise AddressError(INVALID_ADDRESS, text, exc.detail) from None
    return Triplet(interface, address, prefixlen)


def names(addresses: Iterable[Triplet]) -> str:
    """Addresses for a log line, a mail or a report: ``eth0:10.0.0.1/24, eth1:10.0.0.2``, sorted; ``none`` when empty.

    The one spelling of an address list everywhere an operator reads one, so
    a log line, a hook's summary and a replay's timeline can be grepped alike.
    """
    return ", ".join(sorted(str(a) for a in addresses)) or "none"

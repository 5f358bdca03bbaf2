"""Adding, removing and listing the failover addresses through netlink.

Rules of this module:

- pyroute2's synchronous ``IPRoute`` only (its asyncio core does not run under
  Trio). Each call opens and closes its own ``IPRoute`` inside the worker
  thread, because pyroute2 keeps one netlink socket per thread and Trio reuses
  its worker threads.
- An address is identified by (interface, address). The mask is what we *add*
  with; an address found on the interface with another mask still counts as
  present (and is removed whatever its mask), so a changed configuration can
  neither duplicate nor leak an address.
- Idempotent: adding an address that is there and removing one that is gone
  succeed and say so in their return value.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import trio
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from failoverd.addresses import Triplet

log = logging.getLogger(__name__)

INVALID_INTERFACE = "CNode: invalid interface name"
NETNS_RUN_DIR = "/run/netns"

_IFF_UP = 0x1


class InterfaceError(Exception):
    """The triplet's interface cannot carry an address right now."""

    def __init__(self, interface: str, reason: str) -> None:
        self.interface = interface
        self.reason = reason
        super().__init__(f"interface {interface!r} {reason}")


class InterfaceMissing(InterfaceError):
    """No interface of that name on this host: the man page's "CNode: invalid interface name"."""

    diagnostic = INVALID_INTERFACE

    def __init__(self, interface: str) -> None:
        super().__init__(interface, "does not exist on this host")


class InterfaceDown(InterfaceError):
    """The interface exists but is administratively down."""

    def __init__(self, interface: str) -> None:
        super().__init__(interface, "is down (bring it up with: ip link set dev NAME up)")


class AddressChangeError(Exception):
    """The kernel refused to add or remove an address."""

    def __init__(self, verb: str, triplet: Triplet, error: NetlinkError) -> None:
        self.triplet = triplet
        self.code = error.code
        super().__init__(f"cannot {verb} {triplet}: {error}")


class NamespaceMissing(LookupError):
    """The named network namespace does not exist (we never create one)."""


@dataclass(frozen=True)
class Interface:
    name: str
    index: int
    up: bool
    mac: str


class AddressManager:
    """Adds, removes and lists failover addresses on this host's interfaces.

    ``netns`` names a network namespace (``/run/netns/NAME``) to work in
    instead of the caller's own; it must exist.

    Resource handling: no netlink socket outlives a call.

    Error handling: :class:`InterfaceMissing` / :class:`InterfaceDown` when the
    interface cannot take the address, :class:`AddressChangeError` when the
    kernel refuses the change, :class:`NamespaceMissing` for a bad ``netns``.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def __repr__(self) -> str:
        return f"AddressManager(netns={self.netns!r})"

    def _open(self) -> IPRoute:
        if self.netns is None:
            return IPRoute()
        # Checked first because pyroute2 leaks an event loop and sockets when
        # it fails to open a namespace.
        if not os.path.exists(os.path.join(NETNS_RUN_DIR, self.netns)):
            raise NamespaceMissing(f"network namespace {self.netns!r} does not exist")
        # flags=0: without it pyroute2 silently creates a missing namespace.
        return IPRoute(netns=self.netns, flags=0)

    # --- synchronous API (worker threads, ProcessFailover) -------------------

    def interface_sync(self, name: str) -> Interface:
        with self._open() as ipr:
            return _interface(ipr, name)

    def check_interface_sync(self, name: str) -> Interface:
        """The interface, if it exists and is up; else raise :class:`InterfaceError`."""
        interface = self.interface_sync(name)
        if not interface.up:
            raise InterfaceDown(name)
        return interface

    def add_sync(self, triplet: Triplet) -> bool:
        """Put the address on its interface. True if added, False if it was already there."""
        address = str(triplet.address)
        with self._open() as ipr:
            interface = _interface(ipr, triplet.interface)
            if not interface.up:
                raise InterfaceDown(triplet.interface)
            existing = _prefixlens(ipr, interface.index, address)
            if existing:
                _warn_other_mask(triplet, existing)
                return False
            try:
                ipr.addr("add", index=interface.index, address=address, prefixlen=triplet.effective_prefixlen)
            except NetlinkError as error:
                if error.code == errno.EEXIST:  # added by someone else since we looked
                    return False
                raise AddressChangeError("add", triplet, error) from None
        log.info("added %s/%d on %s", address, triplet.effective_prefixlen, triplet.interface)
        return True

    def remove_sync(self, triplet: Triplet) -> bool:
        """Take the address off its interface (whatever its mask). True if removed, False if it was gone."""
        address = str(triplet.address)
        with self._open() as ipr:
            try:
                interface = _interface(ipr, triplet.interface)
            except InterfaceMissing:
                log.warning("%s: interface %s is gone, so is the address", triplet, triplet.interface)
                return False
            removed = False
            for prefixlen in _prefixlens(ipr, interface.index, address):
                try:
                    ipr.addr("del", index=interface.index, address=address, prefixlen=prefixlen)
                except NetlinkError as error:
                    if error.code == errno.EADDRNOTAVAIL:  # removed by someone else since we looked
                        continue
                    raise AddressChangeError("remove", triplet, error) from None
                log.info("removed %s/%d from %s", address, prefixlen, triplet.interface)
                removed = True
        return removed

    def present_sync(self, triplets: Iterable[Triplet]) -> frozenset[Triplet]:
        """Those of ``triplets`` whose address is on their interface right now."""
        wanted = list(triplets)
        with self._open() as ipr:
            indexes = {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}
            configured: dict[tuple[int, str], set[int]] = {}
            for message in ipr.get_addr(family=socket.AF_INET):
                key = (message["index"], message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS"))
                configured.setdefault(key, set()).add(message["prefixlen"])
        present = set()
        for triplet in wanted:
            index = indexes.get(triplet.interface)
            prefixlens = configured.get((index, str(triplet.address))) if index is not None else None
            if prefixlens:
                _warn_other_mask(triplet, prefixlens)
                present.add(triplet)
        return frozenset(present)

    # --- asynchronous API (the Trio runtime) ---------------------------------

    async def check_interface(self, name: str) -> Interface:
        return await trio.to_thread.run_sync(self.check_interface_sync, name)

    async def add(self, triplet: Triplet) -> bool:
        return await trio.to_thread.run_sync(self.add_sync, triplet)

    async def remove(self, triplet: Triplet) -> bool:
        return await trio.to_thread.run_sync(self.remove_sync, triplet)

    async def present(self, triplets: Iterable[Triplet]) -> frozenset[Triplet]:
        return await trio.to_thread.run_sync(self.present_sync, list(triplets))


def _interface(ipr: IPRoute, name: str) -> Interface:
    indexes = ipr.link_lookup(ifname=name)
    if not indexes:
        raise InterfaceMissing(name)
    link = ipr.get_links(indexes[0])[0]
    return Interface(
        name=name,
        index=link["index"],
        up=bool(link["flags"] & _IFF_UP),
        mac=link.get_attr("IFLA_ADDRESS") or "",
    )


def _prefixlens(ipr: IPRoute, index: int, address: str) -> set[int]:
    """The masks with which ``address`` is configured on interface ``index`` (usually 0 or 1 of them)."""
    wanted = ipaddress.IPv4Address(address)
    found = set()
    for message in ipr.get_addr(family=socket.AF_INET, index=index):
        local = message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS")
        if local is not None and ipaddress.IPv4Address(local) == wanted:
            found.add(message["prefixlen"])
    return found


def _warn_other_mask(triplet: Triplet, prefixlens: set[int]) -> None:
    if triplet.effective_prefixlen not in prefixlens:
        masks = ", ".join(f"/{p}" for p in sorted(prefixlens))
        log.warning(
            "%s: the address is already on %s with mask %s, not /%d; leaving it as it is",
            triplet, triplet.interface, masks, triplet.effective_prefixlen,
        )

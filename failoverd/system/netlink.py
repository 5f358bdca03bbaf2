"""Adding, removing and listing the failover addresses through netlink.

Rules of this module:

- The kernel is asked through :mod:`failoverd.system.rtnetlink` (a plain
  netlink socket, a handful of requests), not pyroute2's ``IPRoute``: an
  address change is on the failback's critical path, and the kernel answers
  these requests inside the system calls that make them, in tens of
  microseconds. So the asynchronous API calls the synchronous one directly on
  the Trio thread: a worker-thread hop would cost more than the work.
- Each call opens and closes its own netlink socket (cheap: no namespace
  switch unless ``netns`` is given), so no socket outlives a call.
- An address is identified by (interface, address). The mask is what we *add*
  with; an address found on the interface with another mask still counts as
  present (and is removed whatever its mask), so a changed configuration can
  neither duplicate nor leak an address.
- Idempotent: adding an address that is there and removing one that is gone
  succeed and say so in their return value.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from failoverd.core.addresses import IPAddress, Triplet
from failoverd.system.namespace import in_netns
from failoverd.system.rtnetlink import NetlinkError, RouteSocket

log = logging.getLogger(__name__)

INVALID_INTERFACE = "CNode: invalid interface name"

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

    def _open(self) -> RouteSocket:
        if self.netns is None:
            return RouteSocket.open()
        return in_netns(self.netns, RouteSocket.open)

    # --- synchronous API (worker threads, ProcessFailover) -------------------

    def interface_sync(self, name: str) -> Interface:
        with self._open() as rt:
            return _interface(rt, name)

    def check_interface_sync(self, name: str) -> Interface:
        """The interface, if it exists and is up; else raise :class:`InterfaceError`."""
        interface = self.interface_sync(name)
        if not interface.up:
            raise InterfaceDown(name)
        return interface

    def add_sync(self, triplet: Triplet) -> bool:
        """Put the address on its interface. True if added, False if it was already there."""
        added = self.add_unlogged(triplet)
        if added:
            log_added(triplet)
        return added

    def add_unlogged(self, triplet: Triplet) -> bool:
        """:meth:`add_sync` without its "added" line (an early add logs it later, off the failback's path)."""
        address = triplet.address
        with self._open() as rt:
            interface = _interface(rt, triplet.interface)
            if not interface.up:
                raise InterfaceDown(triplet.interface)
            existing = _prefixlens(rt, interface.index, address)
            if existing:
                _warn_other_mask(triplet, existing)
                return False
            try:
                # IPv6 without the kernel's DAD: the backup ran its own (system/ndp.py) before this, and a
                # tentative address would be unusable for a second and left dadfailed by a conflict.
                rt.add_address(interface.index, address, triplet.effective_prefixlen, nodad=address.version == 6)
            except NetlinkError as error:
                if error.code == errno.EEXIST:  # added by someone else since we looked
                    return False
                raise AddressChangeError("add", triplet, error) from None
        return True

    def remove_sync(self, triplet: Triplet) -> bool:
        """Take the address off its interface (whatever its mask). True if removed, False if it was gone."""
        address = triplet.address
        with self._open() as rt:
            try:
                interface = _interface(rt, triplet.interface)
            except InterfaceMissing:
                log.warning("%s: interface %s is gone, so is the address", triplet, triplet.interface)
                return False
            removed = False
            for prefixlen in sorted(_prefixlens(rt, interface.index, address)):
                try:
                    rt.delete_address(interface.index, address, prefixlen)
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
        with self._open() as rt:
            indexes = rt.links()
            configured: dict[tuple[int, IPAddress], set[int]] = {}
            for found in rt.addresses():
                configured.setdefault((found.index, found.address), set()).add(found.prefixlen)
        present = set()
        for triplet in wanted:
            index = indexes.get(triplet.interface)
            prefixlens = configured.get((index, triplet.address)) if index is not None else None
            if prefixlens:
                _warn_other_mask(triplet, prefixlens)
                present.add(triplet)
        return frozenset(present)

    # --- asynchronous API (the Trio runtime) ---------------------------------
    # Inline on the Trio thread: see the module's rules for why that is short.

    async def check_interface(self, name: str) -> Interface:
        return self.check_interface_sync(name)

    async def add(self, triplet: Triplet) -> bool:
        return self.add_sync(triplet)

    async def remove(self, triplet: Triplet) -> bool:
        return self.remove_sync(triplet)

    async def present(self, triplets: Iterable[Triplet]) -> frozenset[Triplet]:
        return self.present_sync(list(triplets))


def log_added(triplet: Triplet) -> None:
    log.info("added %s/%d on %s", triplet.address, triplet.effective_prefixlen, triplet.interface)


def _interface(rt: RouteSocket, name: str) -> Interface:
    link = rt.link(name)
    if link is None:
        raise InterfaceMissing(name)
    return Interface(name=name, index=link.index, up=bool(link.flags & _IFF_UP), mac=link.mac)


def _prefixlens(rt: RouteSocket, index: int, address: IPAddress) -> set[int]:
    """The masks with which ``address`` is configured on interface ``index`` (usually 0 or 1 of them)."""
    return {found.prefixlen for found in rt.addresses() if found.index == index and found.address == address}


def _warn_other_mask(triplet: Triplet, prefixlens: set[int]) -> None:
    if triplet.effective_prefixlen not in prefixlens:
        masks = ", ".join(f"/{p}" for p in sorted(prefixlens))
        log.warning(
            "%s: the address is already on %s with mask %s, not /%d; leaving it as it is",
            triplet, triplet.interface, masks, triplet.effective_prefixlen,
        )

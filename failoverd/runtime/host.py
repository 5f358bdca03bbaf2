"""The executor's view of this host: ARP probes, and the shared acquire/release procedure.

A thin adapter: :class:`~failoverd.system.takeover.Takeover` does the address
changes with hooks and gratuitous ARP, :class:`~failoverd.system.arp.Prober`
the RFC 5227 probe, :class:`~failoverd.system.arpwatch.ConflictWatcher` the
watch for other hosts claiming what we hold; this class only gives them the
shapes the cores speak.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from failoverd.core.actions import AcquireDone, Addresses, ProbeDone, ReleaseDone
from failoverd.system.arp import Announcer, Prober
from failoverd.system.arpwatch import ConflictWatcher, Report
from failoverd.system.hooks import HookRunner
from failoverd.system.netlink import AddressManager
from failoverd.system.takeover import Takeover


class HostSystem:
    """Addresses, hooks and ARP of the host the daemon runs on."""

    def __init__(self, takeover: Takeover, prober: Prober) -> None:
        self.takeover = takeover
        self.prober = prober

    @classmethod
    def build(
        cls,
        *,
        hook_dir: Path,
        hook_timeout: float,
        probe_count: int,
        probe_spacing: float,
        garp_count: int,
        garp_spacing: float,
    ) -> HostSystem:
        # One probe round lasts probe_count * spacing (Timing.probe_duration):
        # the last probe is followed by one more spacing of listening.
        prober = Prober(count=probe_count, spacing=probe_spacing, wait=max(probe_spacing, 0.01))
        announcer = Announcer(count=garp_count, spacing=garp_spacing)
        takeover = Takeover(AddressManager(), HookRunner(hook_dir, hook_timeout), announcer)
        return cls(takeover, prober)

    @property
    def addresses(self) -> AddressManager:
        return self.takeover.addresses

    async def probe(self, addresses: Addresses) -> ProbeDone:
        return ProbeDone(answered=await self.prober.probe(addresses))

    async def acquire(self, addresses: Addresses) -> AcquireDone:
        return await self.takeover.acquire(addresses)

    async def release(
        self, addresses: Addresses, on_removed: Callable[[ReleaseDone], None] | None = None
    ) -> ReleaseDone:
        return await self.takeover.release(addresses, on_removed)

    async def announce(self, addresses: Addresses) -> None:
        await self.takeover.announce(addresses)

    def conflict_watcher(self, report: Report) -> ConflictWatcher:
        """A watcher of this host's wire, in the namespace its addresses are changed in."""
        return ConflictWatcher(report, netns=self.addresses.netns)

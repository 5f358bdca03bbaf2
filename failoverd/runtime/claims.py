"""The etcd witness, live: the core's ``Claim``/``ReleaseClaim`` as requests, and the renewals.

A core in witness mode (spec/witness.md) asks for the address set's claim
(:class:`~failoverd.core.actions.Claim`) and gives it back
(:class:`~failoverd.core.actions.ReleaseClaim`); the executor runs each in a
task of its own through :class:`WitnessClaims`, and the answers reach the
core as results (:class:`~failoverd.core.actions.ClaimDone`,
:class:`~failoverd.core.actions.RenewDone`) like an ARP probe's. Nothing here
ever runs on the heartbeat path: a hung etcd only makes its own requests time out.

How a claim is taken (``claim``): the key is read; a free key is claimed
(``create_revision == 0``); a key holding another claim is taken over only if
it is *unchanged* a little more than a renew period later
(``WitnessTiming.takeover_watch``: a holder alive and connected to etcd rewrites
it every period, so a takeover compares against a revision such a holder
would have moved, and fails). A claim refused because the key was deleted
between the read and the transaction (a backup that just gave it back) is
tried again at once, at most :data:`CLAIM_ATTEMPTS` times in all.

The claim's key is one per address set, named by its addresses (without
interfaces: the master and the backup may name their interfaces differently),
so every host that may hold the set competes for the same key.

Error handling: every etcd failure becomes an ``unreachable`` or ``refused``
result naming what happened (:class:`~failoverd.system.witness.WitnessError`
messages); nothing raises into the executor. A request that timed out may
still take effect: its lease (a couple of seconds) removes such a claim.

Resource handling: :class:`WitnessClaims` owns the witness client (its
connections), open while :meth:`WitnessClaims.run` runs (a daemon starts it in
its nursery) or inside ``async with``, closed on the way out even when
cancelled; every operation is bounded by
:meth:`WitnessClaims.claim_bound` or the client's request timeout, and a
release left behind at exit is bounded too (its lease expires anyway).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable

import trio

from failoverd.cli.config import WitnessSettings
from failoverd.cli.exitcodes import EX_CONFIG, ProgramError
from failoverd.core.actions import ClaimDone, ReachDone, RenewDone
from failoverd.core.addresses import Triplet
from failoverd.system import witness as etcd

log = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 3
"""A claim refused because its key vanished since it was read is tried again, this many times in all."""


def claim_name(addresses: Iterable[Triplet]) -> str:
    """The claim's name for an address set: its addresses, sorted, comma-separated (``10.0.0.5,10.0.0.6``)."""
    return ",".join(sorted({str(t.address) for t in addresses}))


def witness_claims(settings: WitnessSettings, addresses: Iterable[Triplet], program: str) -> WitnessClaims:
    """The daemon's claims, as ``program@hostname`` (a TLS or credentials file that cannot be used: exit 78)."""
    try:
        return WitnessClaims(settings, addresses, host=f"{program}@{socket.gethostname()}")
    except etcd.WitnessConfigError as error:
        raise ProgramError(EX_CONFIG, str(error)) from None


class WitnessClaims:
    """One host's claim on one address set, through the etcd cluster of ``settings``.

    ``host`` is written into the claim (what the other hosts' refusals name).
    """

    def __init__(self, settings: WitnessSettings, addresses: Iterable[Triplet], *, host: str) -> None:
        credentials = None if settings.credentials_file is None else etcd.read_credentials(settings.credentials_file)
        self.settings = settings
        self.timing = settings.timing
        self.name = claim_name(addresses)
        self.client = etcd.Witness(
            settings.endpoints, host=host, prefix=settings.prefix, timeout=settings.request_timeout,
            cacert=None if settings.cacert is None else str(settings.cacert),
            cert=None if settings.cert is None else str(settings.cert),
            key=None if settings.key is None else str(settings.key),
            credentials=credentials,
        )
        self.client.key(self.name)  # a name etcd cannot take fails here, at start
        self.current: etcd.Claim | None = None
        """The claim granted and not yet given back (or found lost)."""
        self.requests: dict[tuple[str, str], int] = {}
        """Requests by (operation, outcome): for the metrics."""
        self._last_keepalive = float("-inf")

    async def __aenter__(self) -> WitnessClaims:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True):  # closed even when the daemon's nursery is cancelled
            await self.client.__aexit__(*exc_info)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the client open until cancelled."""
        async with self:
            task_status.started()
            await trio.sleep_forever()

    @property
    def renew_period(self) -> float:
        return self.timing.renew_period

    @property
    def claim_bound(self) -> float:
        """The longest a claim takes: read, lease, the takeover's watch, the transaction, a revoke; per attempt."""
        return CLAIM_ATTEMPTS * (4 * self.settings.request_timeout + self.timing.takeover_watch)

    def _count(self, operation: str, outcome: str) -> None:
        self.requests[(operation, outcome)] = self.requests.get((operation, outcome), 0) + 1

    async def claim(self) -> ClaimDone:
        """Take the claim (see the module); ``granted`` makes it :attr:`current`."""
        result = ClaimDone("unreachable", detail=f"no answer within {self.claim_bound:g} s")
        with trio.move_on_after(self.claim_bound):
            result = await self._claim()
        self._count("claim", result.outcome)
        return result

    async def _claim(self) -> ClaimDone:
        detail = ""
        for _ in range(CLAIM_ATTEMPTS):
            try:
                holder = await self.client.read(self.name)
                if holder is not None:
                    seen = trio.current_time()
                    await trio.sleep_until(seen + self.timing.takeover_watch)
                claim = await self.client.claim(self.name, self.timing.lease_ttl, replacing=holder)
            except etcd.ClaimRefused as refused:
                detail = str(refused)
                if refused.holder is None:
                    continue  # given back since we read it: the key is free now
                return ClaimDone("refused", detail=f"held by {refused.holder.host}")
            except etcd.WitnessError as error:
                return ClaimDone("unreachable", detail=str(error))
            self.current = claim
            self._last_keepalive = claim.sent_at
            return ClaimDone("granted", sent_at=claim.sent_at, answered_at=claim.answered_at)
        return ClaimDone("refused", detail=detail)

    async def renew(self) -> RenewDone:
        """One renewal of :attr:`current` (its lease kept alive every third of its TTL)."""
        claim = self.current
        if claim is None:
            return RenewDone("lost", detail="no claim")
        sent_at = trio.current_time()
        keepalive = sent_at - self._last_keepalive >= claim.ttl / 3
        try:
            proof = await self.client.renew(claim, keepalive=keepalive)
        except etcd.ClaimLost as lost:
            if self.current is claim:
                self.current = None
            self._count("renew", "lost")
            return RenewDone("lost", sent_at=sent_at, detail=str(lost))
        except etcd.WitnessError as error:
            self._count("renew", "unreachable")
            return RenewDone("unreachable", sent_at=sent_at, detail=str(error))
        if keepalive:
            self._last_keepalive = sent_at
        self._count("renew", "proved")
        return RenewDone("proved", sent_at=proof.sent_at)

    async def reach(self) -> ReachDone:
        """Does etcd answer us? One read of the claim's key, under the client's request deadline
        (``--etcd-unreachable keep``: a non-holder confirms a holder's keeping only while it does not;
        heartbeatd lets a holding backup fail back only once it does)."""
        sent_at = trio.current_time()
        try:
            await self.client.read(self.name)
        except etcd.WitnessError as error:
            self._count("reach", "unreachable")
            return ReachDone("unreachable", sent_at=sent_at, detail=str(error))
        self._count("reach", "answered")
        return ReachDone("answered", sent_at=sent_at)

    async def release(self) -> None:
        """Give :attr:`current` back (delete the key if still ours, revoke its lease); best effort, bounded."""
        claim, self.current = self.current, None
        if claim is None:
            return
        outcome = "unreachable"
        with trio.move_on_after(3 * self.settings.request_timeout):
            try:
                outcome = "done" if await self.client.release(claim) else "lost"
            except etcd.WitnessError as error:
                log.warning("could not give the witness's claim back (its lease expires in %d s): %s", claim.ttl, error)
        self._count("release", outcome)

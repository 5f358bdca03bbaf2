"""The witness in the runtime, in-process: the executor runs the core's claims beside everything
else, each bounded, so an etcd that accepts connections and never answers (a hung member: here
a real TCP listener on loopback that reads and says nothing) delays no heartbeat, no status
frame and no address change, and its claim comes back ``unreachable`` in bounded time.

Testing charter: loopback only, the real clock with a hard ``fail_after``; the address changes
are recorded, never made (the runtime's in-memory system). tests/test_e2e_witness.py runs the
daemons against a real etcd cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from failoverd.cli.config import WitnessSettings
from failoverd.core.actions import Acquire, Claim, ClaimDone, Reach, ReachDone, ReleaseClaim, Result, Transmit
from failoverd.core.addresses import parse_triplet
from failoverd.runtime.claims import claim_name, witness_claims
from failoverd.runtime.executor import Executor
from failoverd.runtime.memory import MemoryNotifications, MemorySystem, MemoryTransport

VIP = parse_triplet("lo:127.77.0.100/32")
LOOPBACK = "127.0.0.1"


@asynccontextmanager
async def silent_etcd() -> AsyncIterator[int]:
    """A TCP port on loopback that accepts, reads every request and never answers."""

    async def swallow(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some(65536):
                pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, swallow, 0, host=LOOPBACK))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def test_the_claim_is_named_by_the_addresses_not_the_interfaces() -> None:
    names = claim_name([parse_triplet("eth0:10.0.0.6/24"), parse_triplet("bond0:10.0.0.5")])
    assert names == claim_name([parse_triplet("pub0:10.0.0.5/24"), parse_triplet("pub0:10.0.0.6/24")])
    assert names == "10.0.0.5,10.0.0.6"


@pytest.mark.trio
async def test_a_hung_etcd_delays_nothing_and_its_claim_ends_unreachable_in_bounded_time() -> None:
    system, transport = MemorySystem(), MemoryTransport()
    results: list[Result] = []
    with trio.fail_after(10):
        async with silent_etcd() as port:
            settings = WitnessSettings(endpoints=(f"http://{LOOPBACK}:{port}",), request_timeout=0.1)
            async with witness_claims(settings, [VIP], "failoverd") as claims:
                executor = Executor(system, transport, MemoryNotifications(), results.append, claims=claims)
                async with trio.open_nursery() as nursery:
                    await nursery.start(executor.run)
                    started = trio.current_time()
                    executor.submit([Claim()])
                    await trio.sleep(0.05)
                    # The claim hangs on etcd; a status frame and an acquire go on at once.
                    executor.submit([Transmit(b"status", (LOOPBACK,)), Acquire(frozenset({VIP}))])
                    assert transport.sent == [(b"status", (LOOPBACK,))]
                    while len(results) < 2:
                        await trio.sleep(0.01)
                    answered = trio.current_time()
                    executor.submit([ReleaseClaim()])  # nothing granted: nothing to give back
                    await executor.finish_claims()
                    nursery.cancel_scope.cancel()
    assert [type(r).__name__ for r in results] == ["AcquireDone", "ClaimDone"]
    (claim,) = [r for r in results if isinstance(r, ClaimDone)]
    assert claim.outcome == "unreachable" and "no endpoint answered" in claim.detail, claim
    assert answered - started <= claims.claim_bound
    assert claims.requests == {("claim", "unreachable"): 1}
    assert system.kinds() == ["acquire"]


@pytest.mark.trio
async def test_a_reach_of_a_hung_etcd_ends_unreachable_within_one_request_deadline() -> None:
    """--etcd-unreachable keep's question: one read, bounded by the request deadline, beside everything else."""
    system, transport = MemorySystem(), MemoryTransport()
    results: list[Result] = []
    with trio.fail_after(10):
        async with silent_etcd() as port:
            settings = WitnessSettings(endpoints=(f"http://{LOOPBACK}:{port}",), request_timeout=0.1)
            async with witness_claims(settings, [VIP], "failoverd") as claims:
                executor = Executor(system, transport, MemoryNotifications(), results.append, claims=claims)
                async with trio.open_nursery() as nursery:
                    await nursery.start(executor.run)
                    started = trio.current_time()
                    executor.submit([Reach()])
                    executor.submit([Transmit(b"heartbeat", (LOOPBACK,))])
                    assert transport.sent == [(b"heartbeat", (LOOPBACK,))]  # not behind the question
                    while not results:
                        await trio.sleep(0.01)
                    answered = trio.current_time()
                    nursery.cancel_scope.cancel()
    (reach,) = results
    assert isinstance(reach, ReachDone) and reach.outcome == "unreachable", reach
    assert reach.sent_at >= started and answered - started <= 3 * settings.request_timeout
    assert claims.requests == {("reach", "unreachable"): 1}


def test_status_and_systemd_show_the_witness() -> None:
    from failoverd.programs.failoverctl import format_status
    from failoverd.runtime import lifecycle

    snapshot = {"role": "backup", "state": "failed_over", "master": "10.0.1.1", "held": [str(VIP)],
                "witness": {"reachable": False, "claim": True, "proof_left": -0.05, "confirmation_left": 0.25}}
    assert lifecycle.status_line(snapshot).endswith("; etcd claim held, UNREACHABLE")
    text = format_status({"role": "backup", "state": "failed_over", "witness": snapshot["witness"]}, 0.0)
    assert "etcd UNREACHABLE; claim held, proof ran out, kept on confirmations 0.25 s more" in text
    assert "witness" not in format_status({"role": "backup", "state": "monitoring"}, 0.0)


@pytest.mark.trio
async def test_the_metrics_show_the_witness() -> None:
    from test_metrics import Scrape

    from failoverd.core.master import Master
    from failoverd.core.settings import MasterSettings
    from failoverd.core.witness import WitnessTiming
    from failoverd.runtime import metrics
    from failoverd.runtime.shell import CoreShell
    from failoverd.runtime.udp import HeartbeatSocket

    core = Master(MasterSettings(["127.0.0.2"], 0.1, managed=[VIP], backup_fail_after=0.3, arp_probe=False,
                                 witness=WitnessTiming()), 0.0)
    claims = witness_claims(WitnessSettings(endpoints=(f"http://{LOOPBACK}:9",)), [VIP], "heartbeatd")  # never sent to
    meter = metrics.Meter("master", core)
    with HeartbeatSocket.bind(0, LOOPBACK) as sock:
        shell = CoreShell(core, system=MemorySystem(), transport=sock, notifier=None, claims=claims)
        render = meter.collector(shell, sock)
        core.handle_timer(0.3)
        assert core.state == "claiming"
        before = Scrape(render().decode())
        assert before.value("failoverd_witness_claim_held") == 0 and before.value("failoverd_witness_reachable") == 1
        assert before.value("failoverd_witness_proof_left_seconds") is None
        core.action_done(0.31, ClaimDone("granted", sent_at=0.3, answered_at=0.31))
        after = Scrape(render().decode())
        plain = Master(MasterSettings(["127.0.0.2"], 0.1), 0.0)
        without = metrics.Meter("master", plain).collector(
            CoreShell(plain, system=MemorySystem(), transport=sock, notifier=None), sock)
        assert Scrape(without().decode()).value("failoverd_witness_reachable") is None  # only with a witness
    assert after.value("failoverd_witness_claim_held") == 1
    assert after.value("failoverd_witness_proof_left_seconds") is not None
    assert after.value("failoverd_state", role="master", state="granted") == 1

"""The witness client (failoverd/system/witness.py) against a real three-member
etcd cluster in the lab's own namespaces (failoverd/lab/etcd.py), cut the ways
spec/witness.md lists: a member partitioned, the whole cluster stopped and
restarted, the leader SIGKILLed while two clients fight over one claim.

The clients run on the cluster's peer namespaces (each in a thread of its own
that entered the namespace, running its own trio.run). Linearizability is
checked from the store's revisions: every renewal that succeeded happened after
its own claim and before any other claim, so two clients never both held.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from failoverd.lab.etcd import EtcdCluster
from failoverd.system.witness import (
    DEFAULT_PREFIX,
    Claim,
    ClaimLost,
    ClaimRefused,
    Holder,
    Witness,
    WitnessConfigError,
    WitnessError,
    WitnessRefused,
    WitnessUnreachable,
    read_credentials,
)

T = TypeVar("T")
HANG = 20.0  # seconds: a guard against a hung client, never what a test measures

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (Debian package etcd-server)"),
    pytest.mark.netns,
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    with EtcdCluster(members=3, peers=2) as made:
        yield made


@pytest.fixture
def etcd(cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    """The cluster, whole and healthy, with no claim left by the test before."""
    yield cluster
    cluster.rejoin()
    cluster.start()
    cluster.wait_healthy()
    _etcdctl(cluster, "del", "--prefix", DEFAULT_PREFIX)


def run(cluster: EtcdCluster, peer: str, scenario: Callable[[], Awaitable[T]]) -> T:
    async def guarded() -> T:
        with trio.fail_after(HANG):
            return await scenario()

    return cluster.on(peer, lambda: trio.run(guarded))


def test_claim_renew_release_and_watch(etcd: EtcdCluster) -> None:
    box: dict[str, Claim] = {}
    seen: list[tuple[str, str]] = []

    async def claim() -> None:
        async with Witness(etcd.endpoints, host="peer1") as witness:
            box["claim"] = await witness.claim("vip", 5)
            assert box["claim"].sent_at <= box["claim"].answered_at

    async def refused() -> Holder | None:
        async with Witness(etcd.endpoints, host="peer2") as witness:
            with pytest.raises(ClaimRefused) as refusal:
                await witness.claim("vip", 5)
            return refusal.value.holder

    async def renew_and_release_watched() -> None:
        async with Witness(etcd.endpoints, host="peer1") as witness, trio.open_nursery() as nursery:
            async def follow() -> None:
                async with witness.watch("vip", start_revision=box["claim"].revision) as events:
                    async for event in events:
                        seen.append((event.kind, event.holder.host if event.holder else "-"))
                        if event.kind == "delete":
                            break
                nursery.cancel_scope.cancel()

            nursery.start_soon(follow)
            proof = await witness.renew(box["claim"])
            assert proof.revision > box["claim"].revision
            assert await witness.release(box["claim"]) is True

    async def claimed_after_release() -> str:
        async with Witness(etcd.endpoints, host="peer2") as witness:
            await witness.claim("vip", 5)
            holder = await witness.read("vip")
            return holder.host if holder else "-"

    run(etcd, "peer1", claim)
    holder = run(etcd, "peer2", refused)
    assert holder is not None and holder.host == "peer1"
    run(etcd, "peer1", renew_and_release_watched)
    assert seen == [("put", "peer1"), ("put", "peer1"), ("delete", "-")]
    assert run(etcd, "peer2", claimed_after_release) == "peer2"


def test_takeover_only_of_a_claim_unchanged_since_it_was_read(etcd: EtcdCluster) -> None:
    async def scenario() -> None:
        async with Witness(etcd.endpoints, host="peer1") as one, Witness(etcd.endpoints, host="peer2") as two:
            first = await one.claim("vip", 5)
            stale = await two.read("vip")
            assert stale is not None
            await one.renew(first)  # the holder is alive: the key moved on
            with pytest.raises(ClaimRefused):
                await two.claim("vip", 5, replacing=stale)
            silent = await two.read("vip")  # the holder now stops renewing
            second = await two.claim("vip", 5, replacing=silent)
            with pytest.raises(ClaimLost):
                await one.renew(first)
            assert await one.release(first) is False  # not ours any more: left alone
            assert (await two.read("vip")).value == second.value

    run(etcd, "peer1", scenario)


def test_every_failure_is_a_clear_error(etcd: EtcdCluster, tmp_path: Path) -> None:
    for endpoints in ([], ["10.77.0.1:2379"], ["ftp://10.77.0.1"], ["http://10.77.0.1:2379/v3"], ["http://h:99999"]):
        with pytest.raises(WitnessConfigError):
            Witness(endpoints, host="peer1")
    with pytest.raises(WitnessConfigError, match="start and end with"):
        Witness(etcd.endpoints, host="peer1", prefix="failoverd")
    with pytest.raises(WitnessConfigError, match="no endpoint is https"):
        Witness(etcd.endpoints, host="peer1", cacert="/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(WitnessConfigError, match="both"):
        Witness(["https://10.77.0.1:2379"], host="peer1", cert="/nonexistent")
    secret = tmp_path / "etcd-credentials"
    secret.write_text("failover:s3cret\n")
    secret.chmod(0o644)
    with pytest.raises(WitnessConfigError, match="chmod 600"):
        read_credentials(secret)
    secret.chmod(0o600)
    credentials = read_credentials(secret)
    assert (credentials.user, credentials.password) == ("failover", "s3cret")
    assert "s3cret" not in repr(credentials)
    secret.write_text("no colon here\n")
    with pytest.raises(WitnessConfigError, match="user:password"):
        read_credentials(secret)

    async def cut_off() -> str:
        async with Witness(etcd.endpoints, host="peer2", timeout=0.3) as witness:
            with pytest.raises(WitnessUnreachable) as unreachable:
                await witness.claim("vip", 5)
            with pytest.raises(WitnessConfigError):
                await witness.claim("vip", 0)
            return str(unreachable.value)

    etcd.isolate("peer2")
    message = run(etcd, "peer2", cut_off)
    assert "no endpoint answered" in message and "/v3/lease/grant" in message


def test_a_partitioned_member_grants_nothing_and_the_majority_goes_on(etcd: EtcdCluster) -> None:
    leader = etcd.wait_healthy()
    etcd.isolate(leader)
    lonely = etcd.endpoint(leader)

    async def through_the_lonely_member() -> None:
        async with Witness([lonely], host="peer1", timeout=0.5) as witness:
            for _ in range(3):
                with pytest.raises(WitnessError):
                    await witness.claim("vip", 5)

    async def through_all() -> None:
        async with Witness(etcd.endpoints, host="peer2", timeout=2.0) as witness:
            claim = await witness.claim("vip", 5)  # the majority elects a leader within the timeout
            await witness.renew(claim)

    run(etcd, "peer1", through_the_lonely_member)
    run(etcd, "peer2", through_all)
    etcd.rejoin(leader)

    async def the_claim_is_the_majoritys() -> Holder | None:
        async with Witness([lonely], host="peer1", timeout=2.0) as witness:
            for _ in range(20):  # the old leader catches up, then answers for the cluster
                try:
                    return await witness.read("vip")
                except WitnessError:
                    await trio.sleep(0.2)
            return None

    holder = run(etcd, "peer1", the_claim_is_the_majoritys)
    assert holder is not None and holder.host == "peer2"


def test_the_whole_cluster_stopped_and_restarted(etcd: EtcdCluster) -> None:
    box: dict[str, object] = {}

    async def claim() -> None:
        async with Witness(etcd.endpoints, host="peer1") as witness:
            box["claim"] = await witness.claim("vip", 30)

    async def renew_while_down() -> None:
        async with Witness(etcd.endpoints, host="peer1", timeout=0.5) as witness:
            with pytest.raises(WitnessUnreachable):
                await witness.renew(box["claim"])  # type: ignore[arg-type]

    async def after_restart() -> None:
        async with Witness(etcd.endpoints, host="peer1", timeout=2.0) as one, \
                Witness(etcd.endpoints, host="peer2", timeout=2.0) as two:
            await one.renew(box["claim"])  # type: ignore[arg-type]  # the lease survived the restart
            with pytest.raises(ClaimRefused):
                await two.claim("vip", 30)

    run(etcd, "peer1", claim)
    etcd.stop()
    run(etcd, "peer1", renew_while_down)
    etcd.start()
    etcd.wait_healthy()
    run(etcd, "peer1", after_restart)


@dataclass(frozen=True)
class Event:
    kind: str  # "claim" or "renew"
    host: str
    revision: int


def test_two_clients_never_both_hold_while_the_leader_is_killed(etcd: EtcdCluster) -> None:
    """Both peers take the claim from each other as fast as they can (each renews what it
    took a few times); meanwhile the leader is SIGKILLed mid-traffic and restarted."""
    events: list[Event] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def fighter(peer: str) -> Callable[[], Awaitable[None]]:
        async def fight() -> None:
            async with Witness(etcd.endpoints, host=peer, timeout=1.0) as witness:
                for _ in range(400):  # bounded; stops earlier when told
                    if stop.is_set():
                        return
                    try:
                        holder = await witness.read("vip")
                        claim = await witness.claim("vip", 5, replacing=holder)
                        with lock:
                            events.append(Event("claim", peer, claim.revision))
                        for _ in range(3):
                            # A renewal period, as a holder has: the other peer's takeover lands
                            # inside a tenure, not only between two.
                            await trio.sleep(0.02)
                            proof = await witness.renew(claim, keepalive=False)
                            with lock:
                                events.append(Event("renew", peer, proof.revision))
                    except (ClaimRefused, ClaimLost):
                        continue
                    except WitnessError as error:  # etcd unavailable for a moment: the outcome is unknown
                        with lock:
                            failures.append(str(error))
                        await trio.sleep(0.05)
        return fight

    threads = [threading.Thread(target=run, args=(etcd, peer, fighter(peer)), name=peer) for peer in etcd.peers]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(events) >= 30)
        before = len(events)
        victim = etcd.wait_healthy()
        etcd.kill(victim)
        etcd.wait_healthy()  # the other two elect a leader
        _wait_for(lambda: len(events) >= before + 30)
        etcd.start(victim)
        etcd.wait_healthy()
        after = len(events)
        _wait_for(lambda: len(events) >= after + 30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(HANG + 5)
    assert not any(thread.is_alive() for thread in threads)

    ordered = sorted(events, key=lambda event: event.revision)
    assert len({event.revision for event in ordered}) == len(ordered), "two writes at one revision"
    owner = None
    for event in ordered:
        if event.kind == "claim":
            owner = event.host
        else:
            assert event.host == owner, f"{event.host} renewed at {event.revision} while {owner} held: {ordered}"
    claims_by = {event.host for event in ordered if event.kind == "claim"}
    assert claims_by == set(etcd.peers), "both peers must have held the claim for the check to mean anything"


def _wait_for(condition: Callable[[], bool], rounds: int = 400) -> None:
    """Wait (bounded: rounds x 0.05 s) until ``condition`` holds."""
    stopped = threading.Event()
    for _ in range(rounds):
        if condition():
            return
        stopped.wait(0.05)
    raise AssertionError("the clients made no progress")


def _etcdctl(etcd: EtcdCluster, *args: str) -> str:
    member = etcd.wait_healthy()
    argv = ["ip", "netns", "exec", etcd.ns(member), "etcdctl", "--endpoints", etcd.endpoint(member),
            *etcd.etcdctl_tls(), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, env={**os.environ, "ETCDCTL_API": "3"})
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done.stdout


def test_user_and_password_from_a_file(etcd: EtcdCluster, tmp_path: Path) -> None:
    secret = tmp_path / "etcd-credentials"
    secret.write_text("root:lab-only-password\n")
    secret.chmod(0o600)
    credentials = read_credentials(secret)

    async def without() -> str:
        async with Witness(etcd.endpoints, host="peer1") as witness:
            with pytest.raises(WitnessRefused) as refusal:
                await witness.claim("vip", 5)
            return str(refusal.value)

    async def with_them() -> str:
        async with Witness(etcd.endpoints, host="peer1", credentials=credentials) as witness:
            claim = await witness.claim("vip", 5)
            await witness.renew(claim)
            assert await witness.release(claim)
            return claim.name

    _etcdctl(etcd, "user", "add", "root", "--new-user-password=lab-only-password")
    _etcdctl(etcd, "role", "add", "root")
    _etcdctl(etcd, "user", "grant-role", "root", "root")
    _etcdctl(etcd, "auth", "enable")
    try:
        assert "user name is empty" in run(etcd, "peer1", without)
        assert run(etcd, "peer1", with_them) == "vip"
    finally:
        _etcdctl(etcd, "--user", "root:lab-only-password", "auth", "disable")
        _etcdctl(etcd, "user", "delete", "root")
        _etcdctl(etcd, "role", "delete", "root")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the TLS cluster's certificates need openssl")
def test_tls_with_a_client_certificate() -> None:
    with EtcdCluster(members=3, peers=1, tls=True) as tls:
        ca, cert, key = (str(tls.tls_dir / name) for name in ("ca.crt", "client.crt", "client.key"))

        async def scenario() -> tuple[str, str]:
            async with Witness(tls.endpoints, host="peer1", cacert=ca, cert=cert, key=key, timeout=2.0) as witness:
                claim = await witness.claim("vip", 5)
                await witness.renew(claim)
            async with Witness(tls.endpoints, host="peer1", cacert=ca, timeout=0.5) as anonymous:
                with pytest.raises(WitnessUnreachable) as no_certificate:
                    await anonymous.read("vip")
            async with Witness(tls.endpoints, host="peer1", timeout=0.5) as trusting_nobody:
                with pytest.raises(WitnessUnreachable) as unknown_ca:
                    await trusting_nobody.read("vip")
            return str(no_certificate.value), str(unknown_ca.value)

        no_certificate, unknown_ca = run(tls, "peer1", scenario)
        assert "https://10.77.0.1:2379" in no_certificate
        assert "CERTIFICATE_VERIFY_FAILED" in unknown_ca
    with pytest.raises(WitnessConfigError, match="TLS files"):
        Witness(["https://10.77.0.1:2379"], host="peer1", cacert="/nonexistent/ca.crt")

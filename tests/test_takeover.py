"""Acquire and release end to end: hooks, netlink and gratuitous ARP in real namespaces.

Charter: two fresh namespaces per test (unique names, deleted in a
``finally``) joined by the veth pair va/vb, plus a second pair vc/vd whose
``vc`` end is down; 10.x addresses only; every async test under
``trio.fail_after``. Hooks are root-owned /bin/sh scripts in a temporary
directory. Without root the tests skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from _netns import Pair, addresses_on, ip

from failoverd.core.actions import AcquireDone, ProbeDone, ReleaseDone
from failoverd.core.addresses import parse_triplet
from failoverd.system.arp import Announcer, ArpSocket, Prober
from failoverd.system.hooks import HookRunner
from failoverd.system.netlink import AddressManager
from failoverd.system.takeover import Takeover

pytestmark = pytest.mark.netns

@pytest.fixture
def hook_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "hooks"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    return directory


def write_hook(hook_dir: Path, address: str, name: str, body: str) -> None:
    directory = hook_dir / address
    directory.mkdir(mode=0o755, exist_ok=True)
    directory.chmod(0o755)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def takeover(pair: Pair, hook_dir: Path) -> Takeover:
    return Takeover(
        AddressManager(netns=pair.a),
        HookRunner(hook_dir, timeout=5, kill_grace=0.5),
        Announcer(count=2, spacing=0.05, netns=pair.a),
    )


@pytest.mark.trio
async def test_each_step_happens_in_order_around_the_address_change(pair: Pair, hook_dir: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    # Each hook writes its phase and whether the address is on va at that moment.
    probe = f'echo "$FAILOVER_PHASE $(ip -n {pair.a} -o -4 addr show dev va | grep -c 10.64.0.1/24)" >> {journal}'
    for phase in ("Test", "PreAcq", "PostAcq", "PreRel", "PostRel"):
        write_hook(hook_dir, "10.64.0.1", phase, probe)
    triplet = parse_triplet("va:10.64.0.1/24")
    seen_from_b: list[str] = []
    procedure = takeover(pair, hook_dir)
    with trio.fail_after(20):
        async with await ArpSocket.open("vb", netns=pair.b) as capture:
            async with trio.open_nursery() as nursery:
                async def collect() -> None:
                    while True:
                        packet = await capture.receive()
                        if packet is not None and packet.sender_ip == triplet.address:
                            seen_from_b.append(str(packet.target_ip))

                nursery.start_soon(collect)
                acquired = await procedure.acquire([triplet])
                await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
        assert acquired == AcquireDone(acquired=frozenset({triplet}))
        assert addresses_on(pair.a, "va") == {"10.64.0.1/24"}
        released = await procedure.release([triplet])
    assert released == ReleaseDone(released=frozenset({triplet}))
    assert addresses_on(pair.a, "va") == set()
    assert journal.read_text().splitlines() == [
        "Test 0", "PreAcq 0", "PostAcq 1", "Test 1", "PreRel 1", "PostRel 0",
    ]
    assert seen_from_b == ["10.64.0.1", "10.64.0.1"]  # the announcement burst


@pytest.mark.trio
async def test_a_release_reports_once_every_address_is_gone_and_then_runs_the_post_release_hooks(
    pair: Pair, hook_dir: Path, tmp_path: Path
) -> None:
    # Two subnets: removing a primary address would take a secondary of its subnet with it.
    first, second = parse_triplet("va:10.64.4.1/24"), parse_triplet("va:10.64.5.1/24")
    ip("-n", pair.a, "addr", "add", "10.64.4.1/24", "dev", "va")
    ip("-n", pair.a, "addr", "add", "10.64.5.1/24", "dev", "va")
    journal = tmp_path / "journal"
    for triplet in (first, second):
        # Each hook notes its phase, its address and how many of the two are still on va.
        count = f"$(ip -n {pair.a} -o -4 addr show dev va | grep -c -e 10.64.4.1/ -e 10.64.5.1/)"
        for phase in ("PreRel", "PostRel"):
            write_hook(hook_dir, str(triplet.address), phase, f'echo "$FAILOVER_PHASE $FAILOVER_ADDRESS {count}" >> {journal}')
    reported: list[ReleaseDone] = []

    def on_removed(result: ReleaseDone) -> None:
        with journal.open("a") as f:
            f.write(f"reported {len(addresses_on(pair.a, 'va'))}\n")
        reported.append(result)

    with trio.fail_after(20):
        result = await takeover(pair, hook_dir).release([second, first], on_removed)
    assert result == ReleaseDone(released=frozenset({first, second}))
    assert reported == [result]
    assert journal.read_text().splitlines() == [
        "PreRel 10.64.4.1 2", "PreRel 10.64.5.1 1", "reported 0", "PostRel 10.64.4.1 0", "PostRel 10.64.5.1 0",
    ]


@pytest.mark.trio
async def test_a_partial_acquire_reports_exact_sets(pair: Pair, hook_dir: Path) -> None:
    ip("-n", pair.a, "link", "add", "vc", "type", "veth", "peer", "name", "vd")  # vc stays down
    good = parse_triplet("va:10.64.1.1/24")
    down = parse_triplet("vc:10.64.1.2/24")
    refused = parse_triplet("va:10.64.1.3")
    missing = parse_triplet("nosuchif:10.64.1.4")
    write_hook(hook_dir, "10.64.1.3", "Test", "exit 1")
    with trio.fail_after(20):
        result = await takeover(pair, hook_dir).acquire([good, down, refused, missing])
    assert result == AcquireDone(
        acquired=frozenset({good}), failed=frozenset({down, missing}), refused=frozenset({refused})
    )
    assert addresses_on(pair.a, "va") == {"10.64.1.1/24"}
    assert addresses_on(pair.a, "vc") == set()


@pytest.mark.trio
async def test_a_partial_release_reports_exact_sets(pair: Pair, hook_dir: Path) -> None:
    ip("-n", pair.a, "addr", "add", "10.64.2.1/24", "dev", "va")
    ip("-n", pair.a, "addr", "add", "10.64.2.2/32", "dev", "va")
    released, kept, gone = (parse_triplet(t) for t in ("va:10.64.2.1/24", "va:10.64.2.2", "va:10.64.2.3"))
    write_hook(hook_dir, "10.64.2.2", "Test", '[ "$FAILOVER_EVENT" = acquire ]')
    with trio.fail_after(20):
        result = await takeover(pair, hook_dir).release([released, kept, gone])
    assert result == ReleaseDone(released=frozenset({released, gone}), refused=frozenset({kept}))
    assert addresses_on(pair.a, "va") == {"10.64.2.2/32"}


@pytest.mark.trio
async def test_an_address_already_held_is_adopted(pair: Pair, hook_dir: Path, tmp_path: Path) -> None:
    ip("-n", pair.a, "addr", "add", "10.64.3.1/24", "dev", "va")
    marker = tmp_path / "postacq"
    write_hook(hook_dir, "10.64.3.1", "PostAcq", f"touch {marker}")
    triplet = parse_triplet("va:10.64.3.1/24")
    procedure = takeover(pair, hook_dir)
    with trio.fail_after(20):
        assert await procedure.addresses.present([triplet]) == {triplet}
        result = await procedure.acquire([triplet])
    assert result == AcquireDone(acquired=frozenset({triplet}))
    assert addresses_on(pair.a, "va") == {"10.64.3.1/24"}  # one copy, not two
    assert marker.exists()


@pytest.mark.trio
async def test_a_hanging_hook_does_not_stop_the_takeover(pair: Pair, hook_dir: Path) -> None:
    write_hook(hook_dir, "10.64.4.1", "PreAcq", "sleep 300")
    triplet = parse_triplet("va:10.64.4.1/24")
    procedure = Takeover(
        AddressManager(netns=pair.a), HookRunner(hook_dir, timeout=0.3, kill_grace=0.3), Announcer(count=1, netns=pair.a)
    )
    with trio.fail_after(20):
        result = await procedure.acquire([triplet])
    assert result == AcquireDone(acquired=frozenset({triplet}))


@pytest.mark.trio
async def test_probe_reports_what_another_host_answers_for(pair: Pair, hook_dir: Path) -> None:
    ip("-n", pair.b, "addr", "add", "10.64.5.1/24", "dev", "vb")
    taken, free = parse_triplet("va:10.64.5.1/24"), parse_triplet("va:10.64.5.2/24")
    procedure = Takeover(
        AddressManager(netns=pair.a), HookRunner(hook_dir), Announcer(netns=pair.a),
        Prober(count=2, spacing=0.05, wait=0.3, netns=pair.a),
    )
    with trio.fail_after(10):
        assert await procedure.probe([taken, free]) == ProbeDone(answered=frozenset({taken}))


# --- the early add (heartbeatd's failback: the add where the backup's status is counted) ---


@pytest.mark.trio
async def test_an_early_add_leaves_the_acquire_the_arp_and_the_post_acquire_hooks_in_order(
    pair: Pair, hook_dir: Path, tmp_path: Path
) -> None:
    first, second = parse_triplet("va:10.64.6.1/24"), parse_triplet("va:10.64.7.1/24")
    journal = tmp_path / "journal"
    on_va = f"$(ip -n {pair.a} -o -4 addr show dev va | grep -c -e 10.64.6.1/ -e 10.64.7.1/)"
    for triplet in (first, second):
        write_hook(hook_dir, str(triplet.address), "PostAcq", f'echo "PostAcq $FAILOVER_ADDRESS {on_va}" >> {journal}')
    write_hook(hook_dir, "10.64.7.1", "PreAcq", f'echo "PreAcq $FAILOVER_ADDRESS {on_va}" >> {journal}')
    procedure = takeover(pair, hook_dir)
    early = procedure.add_early([second, first])
    # Only the first address, added now and synchronously; no hook has run yet.
    assert early is not None and early.triplet == first and early.added and early.error is None
    assert addresses_on(pair.a, "va") == {"10.64.6.1/24"}
    assert not journal.exists()
    with trio.fail_after(20):
        result = await procedure.acquire([second, first], early)
    assert result == AcquireDone(acquired=frozenset({first, second}))
    assert addresses_on(pair.a, "va") == {"10.64.6.1/24", "10.64.7.1/24"}
    # The first's PostAcq before the second's PreAcq and add: each address its whole sequence.
    assert journal.read_text().splitlines() == ["PostAcq 10.64.6.1 1", "PreAcq 10.64.7.1 1", "PostAcq 10.64.7.1 2"]


@pytest.mark.trio
@pytest.mark.parametrize("hook", ["Test", "PreAcq01"])
async def test_no_early_add_when_a_hook_must_run_before_the_add(
    pair: Pair, hook_dir: Path, tmp_path: Path, hook: str
) -> None:
    triplet = parse_triplet("va:10.64.8.1/24")
    journal = tmp_path / "journal"
    write_hook(hook_dir, "10.64.8.1", hook, f'echo "{hook} $(ip -n {pair.a} -o -4 addr show dev va | grep -c 10.64.8.1/)" >> {journal}')
    procedure = takeover(pair, hook_dir)
    assert procedure.add_early([triplet]) is None
    assert addresses_on(pair.a, "va") == set()
    with trio.fail_after(20):
        result = await procedure.acquire([triplet])
    assert result == AcquireDone(acquired=frozenset({triplet}))
    assert journal.read_text().splitlines() == [f"{hook} 0"]  # ran before the add, as always


@pytest.mark.trio
async def test_a_refusing_test_hook_still_refuses_and_nothing_is_added_early(pair: Pair, hook_dir: Path) -> None:
    triplet = parse_triplet("va:10.64.9.1/24")
    write_hook(hook_dir, "10.64.9.1", "Test", "exit 1")
    procedure = takeover(pair, hook_dir)
    assert procedure.add_early([triplet]) is None
    with trio.fail_after(20):
        result = await procedure.acquire([triplet])
    assert result == AcquireDone(refused=frozenset({triplet}))
    assert addresses_on(pair.a, "va") == set()


@pytest.mark.trio
async def test_an_early_add_that_fails_counts_the_address_failed(pair: Pair, hook_dir: Path, tmp_path: Path) -> None:
    ip("-n", pair.a, "link", "add", "vc", "type", "veth", "peer", "name", "vd")  # vc stays down
    triplet = parse_triplet("vc:10.64.10.1/24")
    marker = tmp_path / "postacq"
    write_hook(hook_dir, "10.64.10.1", "PostAcq", f"touch {marker}")
    procedure = takeover(pair, hook_dir)
    early = procedure.add_early([triplet])
    assert early is not None and not early.added and early.error is not None
    with trio.fail_after(20):
        result = await procedure.acquire([triplet], early)
    assert result == AcquireDone(failed=frozenset({triplet}))
    assert not marker.exists()  # a failed add runs no PostAcq hook, early or not

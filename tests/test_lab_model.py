"""The lab's pure parts: naming and addressing, link impairments, the switch, the control requests.

No namespaces, no sockets: these run everywhere, as any user, in milliseconds.
"""

from __future__ import annotations

import itertools
import struct

import pytest

from failoverd.lab.control import ControlError, LineBuffer, decode, encode
from failoverd.lab.fabric import Fabric
from failoverd.lab.frames import describe
from failoverd.lab.impairment import Impairment, ImpairmentError, Link
from failoverd.lab.switch import Switch
from failoverd.lab.topology import Plan, TopologyError, lab_of_namespace, new_lab_id, wire_port

# --- topology ------------------------------------------------------------------------------------------


def test_plan_addresses_follow_the_documented_layout() -> None:
    plan = Plan("fo1a2b3c", 42)
    assert plan.address("master", "priv") == "10.42.1.1"
    assert plan.address("backup", "priv") == "10.42.1.2"
    assert plan.address("master", "pub") == "10.42.2.1"
    assert plan.address("backup", "pub") == "10.42.2.2"
    assert plan.address("client", "pub") == "10.42.2.10"
    assert plan.vip == "10.42.2.100"
    assert plan.ns("wire") == "fo1a2b3c-wire"
    assert plan.mac("client", "pub") == "02:00:0a:2a:02:0a"


def test_client_is_not_on_the_private_lan() -> None:
    with pytest.raises(TopologyError, match="not on the priv LAN"):
        Plan("fo1a2b3c", 42).address("client", "priv")


@pytest.mark.parametrize("name", ["fo1a2b3c-other", "fo1a2b3-master", "xo1a2b3c-master", "fo1A2B3C-master",
                                  "fo1a2b3c-master-x", "fo1a2b3c"])
def test_namespace_pattern_rejects_names_that_are_not_ours(name: str) -> None:
    assert lab_of_namespace(name) is None


def test_namespace_pattern_accepts_ours() -> None:
    lab_id = new_lab_id()
    assert lab_of_namespace(Plan(lab_id, 16).ns("backup")) == lab_id


def test_wire_port_names_fit_in_an_interface_name() -> None:
    assert max(len(wire_port(lan, host)) for lan, host in Plan("fo000000", 16).links()) < 16


def test_a_second_backup_host_joins_both_lans_and_changes_no_other_host() -> None:
    one, two = Plan("fo1a2b3c", 42), Plan("fo1a2b3c", 42, backups=2)
    assert one.hosts == ("master", "backup", "client") and one.backup_hosts == ("backup",)
    assert two.hosts == ("master", "backup", "backup2", "client") and two.backup_hosts == ("backup", "backup2")
    assert two.address("backup2", "priv") == "10.42.1.3" and two.address("backup2", "pub") == "10.42.2.3"
    assert two.mac("backup2", "pub") == "02:00:0a:2a:02:03"
    assert set(two.links()) == set(one.links()) | {("priv", "backup2"), ("pub", "backup2")}
    for lan, host in one.links():
        assert (one.address(host, lan), one.mac(host, lan)) == (two.address(host, lan), two.mac(host, lan))
    assert max(len(wire_port(lan, host)) for lan, host in two.links()) < 16
    assert lab_of_namespace(two.ns("backup2")) == "fo1a2b3c"


def test_a_lab_with_one_backup_has_no_backup2_and_says_how_to_get_one() -> None:
    with pytest.raises(TopologyError, match=r"no host 'backup2'.*Lab\(backups=2\)"):
        Plan("fo1a2b3c", 42).address("backup2", "pub")
    with pytest.raises(TopologyError, match="not on the priv LAN"):
        Plan("fo1a2b3c", 42, backups=2).address("client", "priv")


@pytest.mark.parametrize("backups", [0, 3, True, "2"])
def test_a_bad_number_of_backup_hosts_is_refused(backups: object) -> None:
    with pytest.raises(TopologyError, match="a lab has 1 to 2 backup hosts"):
        Plan("fo1a2b3c", 42, backups=backups)  # type: ignore[arg-type]


def test_bad_lab_id_and_subnet_are_refused() -> None:
    with pytest.raises(TopologyError, match="not a lab id"):
        Plan("lab1", 42)
    with pytest.raises(TopologyError, match="subnet octet"):
        Plan("fo000000", 255)


# --- impairments ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({"loss": 1.5}, "loss must be between 0 and 1"),
    ({"delay": -0.1}, "delay must be between 0"),
    ({"jitter": "lots"}, "jitter must be a number"),
    ({"duplicate": True}, "duplicate must be a number"),
    ({"latency": 0.1}, "unknown impairment setting"),
])
def test_bad_settings_say_what_is_wrong(settings: dict, message: str) -> None:
    with pytest.raises(ImpairmentError, match=message):
        Impairment.from_dict(settings)


def _offer_many(link: Link, n: int, spacing: float = 0.001) -> list[tuple[float, ...]]:
    return [link.offer(i * spacing).deliveries for i in range(n)]


def test_perfect_link_delivers_everything_at_once_in_order() -> None:
    link = Link("pub", "a", "b", seed=1)
    assert _offer_many(link, 100) == [(i * 0.001,) for i in range(100)]


def test_loss_share_is_close_to_the_setting_and_reproducible() -> None:
    def losses(seed: int) -> int:
        link = Link("pub", "a", "b", seed=seed, impairment=Impairment(loss=0.3))
        return sum(1 for copies in _offer_many(link, 10_000) if not copies)

    assert 2700 < losses(7) < 3300
    assert losses(7) == losses(7)
    assert losses(7) != losses(8)


def test_links_draw_independently_of_each_other() -> None:
    a1 = Link("pub", "a", "b", seed=3, impairment=Impairment(loss=0.5))
    a2 = Link("pub", "a", "b", seed=3, impairment=Impairment(loss=0.5))
    other = Link("pub", "b", "a", seed=3, impairment=Impairment(loss=0.5))
    first = []
    for i in range(200):
        first.append(a1.offer(i).deliveries)
        other.offer(i)  # traffic on another link must not shift a1's draws
    assert first == [a2.offer(i).deliveries for i in range(200)]


def test_delay_and_jitter_stay_within_bounds_and_keep_order() -> None:
    link = Link("pub", "a", "b", seed=1, impairment=Impairment(delay=0.1, jitter=0.05))
    dues = [copies[0] for copies in _offer_many(link, 1000)]
    # FIFO can only push a frame behind an earlier one, which itself was due within 0.15 s of
    # an earlier send: every frame still arrives 0.05..0.15 s after it was sent.
    assert all(0.05 - 1e-9 <= due - i * 0.001 <= 0.15 + 1e-9 for i, due in enumerate(dues))
    assert dues == sorted(dues)


def test_reorder_lets_later_frames_overtake() -> None:
    link = Link("pub", "a", "b", seed=1, impairment=Impairment(reorder=0.2, reorder_gap=0.01))
    dues = [copies[0] for copies in _offer_many(link, 1000)]
    inversions = sum(1 for x, y in itertools.pairwise(dues) if y < x)
    assert inversions > 100
    assert link.counters.reordered > 100


def test_duplicate_delivers_two_copies() -> None:
    link = Link("pub", "a", "b", seed=1, impairment=Impairment(duplicate=1.0))
    assert all(len(copies) == 2 for copies in _offer_many(link, 50))
    assert link.counters.duplicated == 50


def test_partition_blocks_and_counts() -> None:
    link = Link("pub", "a", "b", seed=1, partitioned=True)
    assert _offer_many(link, 10) == [()] * 10
    assert link.counters.blocked == 10 and link.counters.offered == 10


# --- switch --------------------------------------------------------------------------------------------

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def _frame(dst: bytes, src: bytes) -> bytes:
    return dst + src + b"\x08\x00" + bytes(46)


def test_switch_floods_unknown_and_broadcast_then_learns() -> None:
    switch = Switch(["a", "b", "c"])
    assert switch.forward(_frame(b"\xff" * 6, MAC_A), "a", 0) == ("b", "c")
    assert switch.forward(_frame(MAC_A, MAC_B), "b", 1) == ("a",)
    assert switch.forward(_frame(MAC_B, MAC_A), "a", 2) == ("b",)


def test_switch_forgets_stale_entries() -> None:
    switch = Switch(["a", "b", "c"], max_age=10)
    switch.forward(_frame(b"\xff" * 6, MAC_A), "a", 0)
    assert switch.forward(_frame(MAC_A, MAC_B), "b", 11) == ("a", "c")


# --- fabric and control requests -----------------------------------------------------------------------


def test_fabric_impair_applies_to_one_direction_only() -> None:
    fabric = Fabric("fo000000", 1)
    answer = fabric.apply({"op": "impair", "lan": "pub", "src": "client", "dst": "master",
                           "settings": {"loss": 1.0}})
    assert answer == {"ok": True, "links": ["pub:client>master"]}
    assert fabric.links[("pub", "client", "master")].impairment.loss == 1.0
    assert fabric.links[("pub", "master", "client")].impairment.perfect


def test_fabric_partition_is_symmetric_and_heal_undoes_it() -> None:
    fabric = Fabric("fo000000", 1)
    answer = fabric.apply({"op": "partition", "lan": "priv", "a": "master", "b": "backup"})
    assert sorted(answer["links"]) == ["priv:backup>master", "priv:master>backup"]
    frame = _frame(b"\xff" * 6, MAC_A)
    deliveries, outcomes = fabric.offer("priv", "master", frame, 0.0)
    assert deliveries == [] and [o for _, o in outcomes] == ["partitioned"]
    fabric.apply({"op": "heal"})
    deliveries, _ = fabric.offer("priv", "master", frame, 1.0)
    assert [d.dst for d in deliveries] == ["backup"]


def test_fabric_partition_without_b_isolates_a_host() -> None:
    fabric = Fabric("fo000000", 1)
    answer = fabric.apply({"op": "partition", "lan": "pub", "a": "master"})
    assert len(answer["links"]) == 4
    deliveries, _ = fabric.offer("pub", "client", _frame(b"\xff" * 6, MAC_B), 0.0)
    assert [d.dst for d in deliveries] == ["backup"]


@pytest.mark.parametrize("request_, message", [
    ({"op": "explode"}, "unknown op 'explode'"),
    ([1, 2], "JSON object"),
    ({"op": "impair", "lan": "pub", "src": "client"}, "needs"),
    ({"op": "impair", "lan": "priv", "src": "client", "dst": "master"}, "not on the priv LAN"),
    ({"op": "impair", "lan": "dmz", "src": "*", "dst": "*"}, "unknown LAN 'dmz'"),
    ({"op": "impair", "lan": "pub", "src": "*", "dst": "*", "settings": {"loss": 2}}, "between 0 and 1"),
])
def test_fabric_refuses_bad_requests_with_a_reason(request_: object, message: str) -> None:
    answer = Fabric("fo000000", 1).apply(request_)
    assert answer["ok"] is False
    assert message in answer["error"]


def test_control_lines_round_trip_and_split() -> None:
    buffer = LineBuffer()
    data = encode({"op": "ping"}) + encode({"op": "stats"})
    assert buffer.feed(data[:5]) == []
    assert [decode(line) for line in buffer.feed(data[5:])] == [{"op": "ping"}, {"op": "stats"}]
    with pytest.raises(ControlError, match="not a JSON line"):
        decode(b"{nope")


# --- frame descriptions --------------------------------------------------------------------------------


def test_describe_arp_and_udp() -> None:
    arp = (b"\xff" * 6 + MAC_A + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
           + MAC_A + bytes([10, 0, 2, 1]) + bytes(6) + bytes([10, 0, 2, 100]))
    assert describe(arp) == "ARP who-has 10.0.2.100 tell 10.0.2.1"
    ip = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 1, 1, 10, 0, 1, 2])
    udp = struct.pack("!HHHH", 5000, 6000, 8, 0)
    assert describe(MAC_B + MAC_A + b"\x08\x00" + ip + udp) == "IPv4 10.0.1.1:5000 > 10.0.1.2:6000 UDP 8 bytes"
    assert describe(b"short") == "runt frame (5 bytes)"

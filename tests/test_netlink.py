"""The netlink address manager, on real interfaces in namespaces this test creates.

Charter: every test works only inside two fresh namespaces (unique names,
deleted in a ``finally``) joined by a veth pair; addresses are 10.x; each
async test runs under ``trio.fail_after``. Without root the tests skip.
"""

from __future__ import annotations

import ipaddress
import os
import secrets

import pytest
import trio
from _netns import Pair, addresses_on, ip

from failoverd.core.addresses import Triplet, parse_triplet
from failoverd.system.namespace import NamespaceMissing
from failoverd.system.netlink import (
    AddressManager,
    InterfaceDown,
    InterfaceMissing,
)
from failoverd.system.rtnetlink import NetlinkError

pytestmark = pytest.mark.netns


@pytest.mark.trio
async def test_add_is_idempotent_and_uses_the_mask(pair: Pair) -> None:
    manager = AddressManager(netns=pair.a)
    with trio.fail_after(10):
        assert await manager.add(parse_triplet("va:10.61.0.5/24")) is True
        assert await manager.add(parse_triplet("va:10.61.0.5/24")) is False
    assert addresses_on(pair.a, "va") == {"10.61.0.5/24"}


@pytest.mark.trio
async def test_blank_mask_means_slash_32(pair: Pair) -> None:
    manager = AddressManager(netns=pair.a)
    with trio.fail_after(10):
        await manager.add(parse_triplet("va:10.61.0.6"))
    assert addresses_on(pair.a, "va") == {"10.61.0.6/32"}


@pytest.mark.trio
async def test_remove_is_idempotent(pair: Pair) -> None:
    manager = AddressManager(netns=pair.a)
    triplet = parse_triplet("va:10.61.0.7/24")
    with trio.fail_after(10):
        await manager.add(triplet)
        assert await manager.remove(triplet) is True
        assert await manager.remove(triplet) is False
    assert addresses_on(pair.a, "va") == set()


@pytest.mark.trio
async def test_remove_takes_the_address_off_whatever_its_mask(pair: Pair) -> None:
    ip("-n", pair.a, "addr", "add", "10.61.0.8/16", "dev", "va")
    manager = AddressManager(netns=pair.a)
    with trio.fail_after(10):
        assert await manager.present([parse_triplet("va:10.61.0.8/24")]) == {parse_triplet("va:10.61.0.8/24")}
        assert await manager.add(parse_triplet("va:10.61.0.8/24")) is False  # no second copy
        assert await manager.remove(parse_triplet("va:10.61.0.8/24")) is True
    assert addresses_on(pair.a, "va") == set()


@pytest.mark.trio
async def test_present_reports_exactly_what_is_configured(pair: Pair) -> None:
    ip("-n", pair.a, "addr", "add", "10.61.1.1/32", "dev", "va")
    ip("-n", pair.b, "addr", "add", "10.61.1.2/32", "dev", "vb")  # other host: not ours
    manager = AddressManager(netns=pair.a)
    held = Triplet("va", ipaddress.IPv4Address("10.61.1.1"), None)
    candidates = [
        held,
        parse_triplet("va:10.61.1.2"),
        parse_triplet("va:10.61.1.3/24"),
        parse_triplet("nosuchif:10.61.1.1"),
    ]
    with trio.fail_after(10):
        assert await manager.present(candidates) == {held}


@pytest.mark.trio
async def test_missing_interface_is_a_clear_error(pair: Pair) -> None:
    manager = AddressManager(netns=pair.a)
    with trio.fail_after(10):
        with pytest.raises(InterfaceMissing) as caught:
            await manager.add(parse_triplet("nosuchif:10.61.2.1"))
        assert caught.value.diagnostic == "CNode: invalid interface name"
        assert "nosuchif" in str(caught.value)
        with pytest.raises(InterfaceMissing):
            await manager.check_interface("nosuchif")
        # Removing from an interface that does not exist: the address is not there.
        assert await manager.remove(parse_triplet("nosuchif:10.61.2.1")) is False


@pytest.mark.trio
async def test_down_interface_refuses_an_address(pair: Pair) -> None:
    ip("-n", pair.a, "link", "set", "va", "down")
    manager = AddressManager(netns=pair.a)
    with trio.fail_after(10):
        with pytest.raises(InterfaceDown, match="'va' is down"):
            await manager.check_interface("va")
        with pytest.raises(InterfaceDown):
            await manager.add(parse_triplet("va:10.61.3.1/24"))
    assert addresses_on(pair.a, "va") == set()


@pytest.mark.trio
async def test_check_interface_reports_index_and_mac(pair: Pair) -> None:
    manager = AddressManager(netns=pair.a)
    with trio.fail_after(10):
        interface = await manager.check_interface("va")
    shown = ip("-n", pair.a, "-o", "link", "show", "dev", "va")
    assert shown.startswith(f"{interface.index}: va@")
    assert f"link/ether {interface.mac} " in shown
    assert interface.up


@pytest.mark.trio
async def test_a_name_no_interface_can_have_is_missing_not_an_error(pair: Pair) -> None:
    manager = AddressManager(netns=pair.a)
    with trio.fail_after(10):
        for name in ("x" * 16, "", "bad\0name"):
            with pytest.raises(InterfaceMissing):
                await manager.check_interface(name)


def test_the_kernel_refusing_a_request_raises_its_errno(pair: Pair) -> None:
    import errno

    from failoverd.system.namespace import in_netns
    from failoverd.system.rtnetlink import RouteSocket

    with in_netns(pair.a, RouteSocket.open) as rt:
        index = rt.link("va").index
        address = ipaddress.IPv4Address("10.61.5.1")
        rt.add_address(index, address, 24)
        with pytest.raises(NetlinkError) as exists:
            rt.add_address(index, address, 24)
        assert exists.value.code == errno.EEXIST
        found = {(a.address, a.prefixlen) for a in rt.addresses() if a.index == index and a.address.version == 4}
        assert found == {(address, 24)}
        rt.delete_address(index, address, 24)
        with pytest.raises(NetlinkError) as gone:
            rt.delete_address(index, address, 24)
        assert gone.value.code == errno.EADDRNOTAVAIL
        assert rt.links()["va"] == index
    assert addresses_on(pair.a, "va") == set()


def test_missing_namespace_is_never_created() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = f"fo{secrets.token_hex(3)}x"
    with pytest.raises(NamespaceMissing):
        AddressManager(netns=name).present_sync([parse_triplet("va:10.61.4.1")])
    assert not os.path.exists(f"/run/netns/{name}")


# --- IPv6 (issue 13) ----------------------------------------------------------------


def addresses6_on(ns: str, dev: str) -> dict[str, str]:
    """Each global IPv6 address on ``dev`` with the rest of its ``ip`` line (where the flags are)."""
    out = ip("-n", ns, "-o", "-6", "addr", "show", "dev", dev, "scope", "global")
    return {line.split()[3]: line for line in out.splitlines()}


@pytest.mark.trio
async def test_ipv6_is_added_without_dad_and_removed(pair: Pair) -> None:
    manager = AddressManager(netns=pair.a)
    triplet = parse_triplet("va:2001:db8:61::5/64")
    with trio.fail_after(10):
        assert await manager.add(triplet) is True
        assert await manager.add(triplet) is False
        assert await manager.present([triplet, parse_triplet("va:2001:db8:61::6/64")]) == {triplet}
    found = addresses6_on(pair.a, "va")
    assert set(found) == {"2001:db8:61::5/64"}
    # Usable at once: not tentative (the kernel's DAD would hold it so for a second), and
    # nothing another host answers can ever leave it dadfailed.
    line = found["2001:db8:61::5/64"]
    assert "nodad" in line and "tentative" not in line and "dadfailed" not in line
    with trio.fail_after(10):
        assert await manager.remove(triplet) is True
        assert await manager.remove(triplet) is False
    assert addresses6_on(pair.a, "va") == {}


@pytest.mark.trio
async def test_ipv6_blank_mask_means_slash_128_and_families_do_not_mix(pair: Pair) -> None:
    manager = AddressManager(netns=pair.a)
    v6 = parse_triplet("va:2001:db8:61::7")
    v4 = parse_triplet("va:10.61.0.9/24")
    with trio.fail_after(10):
        await manager.add(v6)
        await manager.add(v4)
        assert await manager.present([v6, v4]) == {v6, v4}
        assert await manager.remove(v4) is True
        assert await manager.present([v6, v4]) == {v6}
    assert set(addresses6_on(pair.a, "va")) == {"2001:db8:61::7/128"}
    assert addresses_on(pair.a, "va") == set()


def test_ipv6_addresses_are_added_without_dad_listed_by_family_and_removed(pair: Pair) -> None:
    import errno
    import socket

    from failoverd.system.namespace import in_netns
    from failoverd.system.rtnetlink import RouteSocket

    v6 = ipaddress.IPv6Address("fd61::5")
    v4 = ipaddress.IPv4Address("10.61.6.1")
    with in_netns(pair.a, RouteSocket.open) as rt:
        index = rt.link("va").index
        rt.add_address(index, v6, 64)
        rt.add_address(index, v4, 24)
        shown = ip("-n", pair.a, "-o", "-6", "addr", "show", "dev", "va", "scope", "global")
        assert "inet6 fd61::5/64" in shown
        # Usable at once: no duplicate address detection, so never "tentative".
        assert "nodad" in shown and "tentative" not in shown
        mine = {(a.address, a.prefixlen) for a in rt.addresses(socket.AF_INET6) if a.index == index}
        assert (v6, 64) in mine and all(a.version == 6 for a, _ in mine)
        assert {(a.address, a.prefixlen) for a in rt.addresses(socket.AF_INET) if a.index == index} == {(v4, 24)}
        both = {(a.address, a.prefixlen) for a in rt.addresses(socket.AF_UNSPEC) if a.index == index}
        assert {(v6, 64), (v4, 24)} <= both
        rt.delete_address(index, v6, 64)
        with pytest.raises(NetlinkError) as gone:
            rt.delete_address(index, v6, 64)
        assert gone.value.code == errno.EADDRNOTAVAIL
        assert v6 not in {a.address for a in rt.addresses(socket.AF_INET6)}
        rt.delete_address(index, v4, 24)


def test_an_unknown_address_family_is_refused_before_asking(pair: Pair) -> None:
    import socket

    from failoverd.system.namespace import in_netns
    from failoverd.system.rtnetlink import RouteSocket

    with in_netns(pair.a, RouteSocket.open) as rt:
        with pytest.raises(ValueError, match="address family"):
            rt.addresses(socket.AF_PACKET)
        assert rt.links()["va"] == rt.link("va").index  # the socket is still in step


def test_a_malformed_answer_is_a_protocol_error_not_a_crash() -> None:
    import errno
    import socket
    import struct

    from failoverd.system.rtnetlink import RouteSocket

    # A datagram socket pair stands in for the kernel: the "answer" claims
    # to be longer than the datagram that carries it.
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with kernel, RouteSocket(ours) as rt:
        ours.settimeout(5)
        kernel.send(struct.pack("=IHHII", 400, 16, 2, 1, 0) + b"\0" * 16)
        with pytest.raises(OSError) as caught:
            rt.links()
        assert caught.value.errno == errno.EPROTO
        assert kernel.recv(100)[4:6] == struct.pack("=H", 18)  # it did ask: RTM_GETLINK


def test_link_details_is_one_dump_of_what_link_answers_per_name(pair: Pair) -> None:
    from failoverd.system.namespace import in_netns
    from failoverd.system.rtnetlink import RouteSocket

    with in_netns(pair.a, RouteSocket.open) as rt:
        details = rt.link_details()
        assert set(details) == set(rt.links()) >= {"lo", "va"}
        for name, link in details.items():
            assert rt.link(name) == link
    assert f"link/ether {details['va'].mac} " in ip("-n", pair.a, "-o", "link", "show", "dev", "va")

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
from pyroute2.netlink.exceptions import NetlinkError

from failoverd.core.addresses import Triplet, parse_triplet
from failoverd.system.namespace import NamespaceMissing
from failoverd.system.netlink import (
    AddressManager,
    InterfaceDown,
    InterfaceMissing,
)

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

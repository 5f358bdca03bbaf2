"""Property tests for the address vocabulary (failoverd.core.addresses).

Charter: every string either parses to exactly what it says or is rejected
with the right one of the original's two diagnostics; formatting a parsed
triplet and parsing it again gives the same triplet. The oracles below are
written independently of the parser's regular expressions (IPv6 against
the C library's ``inet_pton``).
"""

from __future__ import annotations

import ipaddress
import socket
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from failoverd.core.addresses import (
    INVALID_ADDRESS,
    INVALID_PAIR,
    AddressError,
    Triplet,
    names,
    parse_ip,
    parse_ipv4,
    parse_ipv6,
    parse_triplet,
)


def ipv4_oracle(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if len(parts) != 4:
        return None
    octets = []
    for part in parts:
        if not part or any(c not in "0123456789" for c in part):
            return None
        if len(part) > 1 and part[0] == "0":
            return None
        if int(part) > 255:
            return None
        octets.append(int(part))
    return ipaddress.IPv4Address(".".join(map(str, octets)))


def ipv6_oracle(text: str) -> ipaddress.IPv6Address | None:
    """inet_pton's reading of an unscoped IPv6 address, minus the IPv4-mapped ones (write those as IPv4)."""
    if any(c not in "0123456789abcdefABCDEF:." for c in text) or ":" not in text:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        return None
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return None
    return ipaddress.IPv6Address(packed)


def interface_ok(name: str) -> bool:
    return (
        0 < len(name.encode("utf-8", "surrogatepass")) <= 15
        and not any(c in "/:%" or c.isspace() or c == "\x00" for c in name)
        and name not in (".", "..")
    )


def mask_oracle(text: str, limit: int = 32) -> int | None:
    if not text or any(c not in "0123456789" for c in text) or len(text) > 3:
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    return int(text) if int(text) <= limit else None


# Strings near the accepted language, so that both branches are exercised.
octet_like = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["", "00", "01", "+1", "-1", "0x1", " 1", "1 ", "١", "²", "256", "999"]),
)
ipv4_like = st.one_of(
    st.lists(octet_like, min_size=1, max_size=6).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.text(alphabet="0123456789.x+- ", max_size=20),
)
interface_like = st.one_of(
    st.sampled_from(["eth0", "en0", "lo", "br-lan", "veth.10", ".", "..", "", "a" * 15, "a" * 16, "é" * 8, "e\x00"]),
    st.text(alphabet=string.ascii_letters + string.digits + "-_./ \t", min_size=0, max_size=17),
    st.text(max_size=16),
)
ipv6_like = st.one_of(
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
    st.lists(st.sampled_from(["", "0", "db8", "2001", "ffff", "fe80", "12345", "g", "1.2.3.4", "01.2.3.4"]),
             min_size=1, max_size=10).map(":".join),
    st.text(alphabet="0123456789abcdefABCDEF:.%g ", max_size=45),
)
mask_like = st.one_of(st.integers(0, 140).map(str), st.sampled_from(["", "00", "08", "+8", "-1", "x", "32 ", "0128"]))
triplet_like = st.one_of(
    st.tuples(interface_like, st.one_of(ipv4_like, ipv6_like), st.one_of(st.none(), mask_like)).map(
        lambda t: f"{t[0]}:{t[1]}" + ("" if t[2] is None else f"/{t[2]}")
    ),
    st.text(alphabet="eth0:1.2/ ", max_size=24),
    st.text(alphabet="eth0:1f.2/%", max_size=30),
    st.text(max_size=30),
)


@given(ipv4_like)
@example("10.1")
@example("1.2.3.256")
@example("0x0a.0.0.1")
@example("+1.2.3.4")
@example(" 1.2.3.4")
@example("1.2.3.4\n")
def test_ipv4_parses_exactly_what_it_says_or_is_rejected(text: str) -> None:
    expected = ipv4_oracle(text)
    if expected is None:
        with pytest.raises(AddressError) as caught:
            parse_ipv4(text)
        assert caught.value.diagnostic == INVALID_ADDRESS
        assert caught.value.argument == text
    else:
        assert parse_ipv4(text) == expected
        assert str(parse_ipv4(text)) == text


@given(triplet_like)
@example("en0:192.13.2.2")
@example("en1:1.2.3.4/24")
@example("en0:192.13.2.2/33")
@example("en0:10.1")
@example("en0192.13.2.2")
@example("a:b:1.2.3.4")
@example("eth0:1.2.3.4/24/8")
@example("eth0:2001:db8::10/64")
@example("eth0:2001:DB8:0:0::10/128")
@example("eth0:2001:db8::10/129")
@example("eth0:fe80::1%eth0")
@example("eth0:::ffff:10.0.0.1")
@example("eth0:::")
def test_triplet_parses_exactly_what_it_says_or_is_rejected(text: str) -> None:
    # The oracle: the right shape first (else "pair"), then the address. The
    # interface ends at the first colon; an address with a colon is IPv6.
    expected_diagnostic = None
    if ":" not in text:
        expected_diagnostic = INVALID_PAIR
    else:
        interface, rest = text.split(":", 1)
        addr_text, slash, mask_text = rest.partition("/")
        limit = 128 if ":" in addr_text else 32
        oracle = ipv6_oracle if ":" in addr_text else ipv4_oracle
        if not interface_ok(interface) or "/" in mask_text or (slash and mask_oracle(mask_text, limit) is None):
            expected_diagnostic = INVALID_PAIR
        elif oracle(addr_text) is None:
            expected_diagnostic = INVALID_ADDRESS
    if expected_diagnostic is not None:
        with pytest.raises(AddressError) as caught:
            parse_triplet(text)
        assert caught.value.diagnostic == expected_diagnostic
        assert caught.value.argument == text
        return
    triplet = parse_triplet(text)
    assert triplet.interface == interface
    assert triplet.address == oracle(addr_text)
    assert triplet.prefixlen == (mask_oracle(mask_text, limit) if slash else None)
    # Accepted IPv4 text is already canonical: it formats back to itself;
    # IPv6 formats to its one canonical spelling (RFC 5952), which parses back.
    if limit == 32:
        assert str(triplet) == text
    else:
        assert str(triplet) == f"{interface}:{triplet.address.compressed}" + (f"/{mask_text}" if slash else "")
        assert parse_triplet(str(triplet)) == triplet


valid_interfaces = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/:\x00"), min_size=1, max_size=15
).filter(interface_ok)
triplets = st.builds(
    Triplet,
    interface=valid_interfaces,
    address=st.ip_addresses(v=4),
    prefixlen=st.one_of(st.none(), st.integers(0, 32)),
)
ipv6_triplets = st.builds(
    Triplet,
    interface=valid_interfaces,
    address=st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None),
    prefixlen=st.one_of(st.none(), st.integers(0, 128)),
)


@given(triplets)
def test_format_then_parse_is_identity(triplet: Triplet) -> None:
    assert parse_triplet(str(triplet)) == triplet


@given(ipv6_triplets)
def test_ipv6_format_then_parse_is_identity(triplet: Triplet) -> None:
    text = str(triplet)
    assert text.startswith(f"{triplet.interface}:")
    assert parse_triplet(text) == triplet
    assert str(parse_triplet(text)) == text


@given(st.one_of(triplets, ipv6_triplets))
def test_effective_prefixlen_defaults_to_host_route(triplet: Triplet) -> None:
    expected = (32 if triplet.address.version == 4 else 128) if triplet.prefixlen is None else triplet.prefixlen
    assert triplet.effective_prefixlen == expected


@given(st.lists(st.one_of(triplets, ipv6_triplets), max_size=8))
def test_mixed_families_sort_interface_then_ipv4_first(items: list[Triplet]) -> None:
    ordered = sorted(items)
    keys = [(t.interface, t.address.version, int(t.address)) for t in ordered]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fe80::1%eth1", "fe80::1%eth1"),
        ("FE80::1%eth1", "fe80::1%eth1"),
        ("2001:db8::1", "2001:db8::1"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_scoped_single_addresses(text: str, expected: str) -> None:
    assert str(parse_ip(text, scoped=True)) == expected


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("fe80::1", "a link-local address needs its interface, e.g. fe80::1%eth1"),
        ("2001:db8::1%eth1", "a %scope is for link-local addresses (fe80::/10) only"),
        ("fe80::1%", "the scope '' is not an interface name"),
        ("fe80::1%a/b", "the scope 'a/b' is not an interface name"),
        ("fe80::1%" + "e" * 16, f"the scope {'e' * 16!r} is not an interface name"),
        ("::ffff:10.0.0.1", "an IPv4-mapped address: write 10.0.0.1"),
        ("2001:db8::1 ", "expected an IPv6 address, e.g. 2001:db8::10"),
        ("2001:db8:::1", "expected an IPv6 address, e.g. 2001:db8::10"),
    ],
)
def test_bad_single_ipv6_keeps_the_original_wording(text: str, detail: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_ip(text, scoped=True)
    assert caught.value.diagnostic == INVALID_ADDRESS
    assert str(caught.value) == f"CNode: invalid IP address: {text!r} ({detail})"


def test_unscoped_parse_refuses_a_scope() -> None:
    with pytest.raises(AddressError) as caught:
        parse_ipv6("fe80::1%eth1")
    assert caught.value.diagnostic == INVALID_ADDRESS


def test_error_names_argument_and_reason() -> None:
    with pytest.raises(AddressError) as caught:
        parse_triplet("en0:10.1/24")
    assert str(caught.value).startswith("CNode: invalid IP address: 'en0:10.1/24'")
    with pytest.raises(AddressError) as caught:
        parse_triplet("en0/10.0.0.1")
    assert str(caught.value).startswith("Invalid interface / IP address pair: 'en0/10.0.0.1'")
    with pytest.raises(AddressError) as caught:
        parse_triplet("eth0:2001:db8::g/64")
    assert str(caught.value).startswith("CNode: invalid IP address: 'eth0:2001:db8::g/64'")
    with pytest.raises(AddressError) as caught:
        parse_triplet("eth0:2001:db8::1/129")
    assert str(caught.value) == (
        "Invalid interface / IP address pair: 'eth0:2001:db8::1/129' (mask must be an integer 0..128)"
    )


def test_an_address_list_has_one_spelling_everywhere() -> None:
    # Log lines, mails, hook summaries and replay timelines all list addresses through names().
    from failoverd.system.takeover import _summary

    first, second = parse_triplet("eth1:10.0.0.2"), parse_triplet("eth0:10.0.0.1/24")
    assert names([first, second]) == "eth0:10.0.0.1/24, eth1:10.0.0.2"
    assert names([]) == "none"
    assert names([parse_triplet("eth0:10.0.0.10"), parse_triplet("eth0:10.0.0.9")]) == "eth0:10.0.0.9, eth0:10.0.0.10"
    assert _summary(frozenset({first, second}), frozenset(), frozenset(), "acquired") == (
        "acquired eth0:10.0.0.1/24, eth1:10.0.0.2; failed none; refused by Test none"
    )

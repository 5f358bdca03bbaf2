"""Property tests for the address vocabulary (failoverd.core.addresses).

Charter: every string either parses to exactly what it says or is rejected
with the right one of the original's two diagnostics; formatting a parsed
triplet and parsing it again gives the same triplet. The oracles below are
written independently of the parser's regular expressions.
"""

from __future__ import annotations

import ipaddress
import string

import pytest
from hypothesis import example, given, strategies as st

from failoverd.core.addresses import (
    INVALID_ADDRESS,
    INVALID_PAIR,
    AddressError,
    Triplet,
    names,
    parse_ipv4,
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


def interface_ok(name: str) -> bool:
    return (
        0 < len(name.encode("utf-8", "surrogatepass")) <= 15
        and not any(c in "/:" or c.isspace() or c == "\x00" for c in name)
        and name not in (".", "..")
    )


def mask_oracle(text: str) -> int | None:
    if not text or any(c not in "0123456789" for c in text) or len(text) > 2:
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    return int(text) if int(text) <= 32 else None


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
mask_like = st.one_of(st.integers(0, 40).map(str), st.sampled_from(["", "00", "08", "+8", "-1", "x", "32 "]))
triplet_like = st.one_of(
    st.tuples(interface_like, ipv4_like, st.one_of(st.none(), mask_like)).map(
        lambda t: f"{t[0]}:{t[1]}" + ("" if t[2] is None else f"/{t[2]}")
    ),
    st.text(alphabet="eth0:1.2/ ", max_size=24),
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
def test_triplet_parses_exactly_what_it_says_or_is_rejected(text: str) -> None:
    # The oracle: the right shape first (else "pair"), then the address.
    expected_diagnostic = None
    if text.count(":") != 1:
        expected_diagnostic = INVALID_PAIR
    else:
        interface, rest = text.split(":")
        addr_text, slash, mask_text = rest.partition("/")
        if not interface_ok(interface) or "/" in mask_text:
            expected_diagnostic = INVALID_PAIR
        elif slash and mask_oracle(mask_text) is None:
            expected_diagnostic = INVALID_PAIR
        elif ipv4_oracle(addr_text) is None:
            expected_diagnostic = INVALID_ADDRESS
    if expected_diagnostic is not None:
        with pytest.raises(AddressError) as caught:
            parse_triplet(text)
        assert caught.value.diagnostic == expected_diagnostic
        assert caught.value.argument == text
        return
    triplet = parse_triplet(text)
    assert triplet.interface == interface
    assert triplet.address == ipv4_oracle(addr_text)
    assert triplet.prefixlen == (mask_oracle(mask_text) if slash else None)
    # Accepted text is already canonical: it formats back to itself.
    assert str(triplet) == text


valid_interfaces = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/:\x00"), min_size=1, max_size=15
).filter(interface_ok)
triplets = st.builds(
    Triplet,
    interface=valid_interfaces,
    address=st.ip_addresses(v=4),
    prefixlen=st.one_of(st.none(), st.integers(0, 32)),
)


@given(triplets)
def test_format_then_parse_is_identity(triplet: Triplet) -> None:
    assert parse_triplet(str(triplet)) == triplet


@given(triplets)
def test_effective_prefixlen_defaults_to_host_route(triplet: Triplet) -> None:
    expected = 32 if triplet.prefixlen is None else triplet.prefixlen
    assert triplet.effective_prefixlen == expected


def test_error_names_argument_and_reason() -> None:
    with pytest.raises(AddressError) as caught:
        parse_triplet("en0:10.1/24")
    assert str(caught.value).startswith("CNode: invalid IP address: 'en0:10.1/24'")
    with pytest.raises(AddressError) as caught:
        parse_triplet("en0/10.0.0.1")
    assert str(caught.value).startswith("Invalid interface / IP address pair: 'en0/10.0.0.1'")


def test_an_address_list_has_one_spelling_everywhere() -> None:
    # Log lines, mails, hook summaries and replay timelines all list addresses through names().
    from failoverd.system.takeover import _summary

    first, second = parse_triplet("eth1:10.0.0.2"), parse_triplet("eth0:10.0.0.1/24")
    assert names([first, second]) == "eth0:10.0.0.1/24, eth1:10.0.0.2"
    assert names([]) == "none"
    assert _summary(frozenset({first, second}), frozenset(), frozenset(), "acquired") == (
        "acquired eth0:10.0.0.1/24, eth1:10.0.0.2; failed none; refused by Test none"
    )

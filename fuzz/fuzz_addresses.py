"""Fuzz the address and triplet parsers (failoverd.core.addresses), IPv4 and IPv6.

Invariants:
- ``parse_ipv4``, ``parse_ip`` (scoped or not) and ``parse_triplet`` raise
  nothing but :class:`AddressError`, whose ``diagnostic`` is one of the
  original's two wordings;
- accepted IPv4 re-serialises identically: ``str(parse_triplet(t)) == t``
  and ``str(parse_ipv4(a)) == a`` (the grammar has one spelling per value);
- accepted IPv6 re-serialises to its one canonical spelling, which parses
  back to the same value and is its own canonical spelling (a fixed point);
- an accepted triplet's interface is the text before the first colon.

Run: fuzz/run.sh fuzz_addresses SECONDS
"""

import sys

import atheris

with atheris.instrument_imports():
    from failoverd.core.addresses import (
        INVALID_ADDRESS,
        INVALID_PAIR,
        AddressError,
        parse_ip,
        parse_ipv4,
        parse_triplet,
    )


def TestOneInput(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        triplet = parse_triplet(text)
    except AddressError as exc:
        assert exc.diagnostic in (INVALID_PAIR, INVALID_ADDRESS), exc.diagnostic
    else:
        assert triplet.interface == text.split(":", 1)[0]
        if triplet.version == 4:
            assert str(triplet) == text, f"{text!r} re-serialises as {str(triplet)!r}"
        assert parse_triplet(str(triplet)) == triplet
        assert str(parse_triplet(str(triplet))) == str(triplet)
    try:
        address = parse_ipv4(text)
    except AddressError as exc:
        assert exc.diagnostic == INVALID_ADDRESS, exc.diagnostic
    else:
        assert str(address) == text, f"{text!r} re-serialises as {str(address)!r}"
    for scoped in (False, True):
        try:
            any_address = parse_ip(text, scoped=scoped)
        except AddressError as exc:
            assert exc.diagnostic == INVALID_ADDRESS, exc.diagnostic
        else:
            again = parse_ip(str(any_address), scoped=scoped)
            assert again == any_address and str(again) == str(any_address), (text, str(any_address))


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""Fuzz the address and triplet parsers (failoverd.core.addresses).

Invariants:
- ``parse_ipv4`` and ``parse_triplet`` raise nothing but :class:`AddressError`,
  whose ``diagnostic`` is one of the original's two wordings;
- accepted input re-serialises identically: ``str(parse_triplet(t)) == t``
  and ``str(parse_ipv4(a)) == a`` (the grammar has one spelling per value).

Run: fuzz/run.sh fuzz_addresses SECONDS
"""

import sys

import atheris

with atheris.instrument_imports():
    from failoverd.core.addresses import INVALID_ADDRESS, INVALID_PAIR, AddressError, parse_ipv4, parse_triplet


def TestOneInput(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        triplet = parse_triplet(text)
    except AddressError as exc:
        assert exc.diagnostic in (INVALID_PAIR, INVALID_ADDRESS), exc.diagnostic
    else:
        assert str(triplet) == text, f"{text!r} re-serialises as {str(triplet)!r}"
        assert parse_triplet(str(triplet)) == triplet
    try:
        address = parse_ipv4(text)
    except AddressError as exc:
        assert exc.diagnostic == INVALID_ADDRESS, exc.diagnostic
    else:
        assert str(address) == text, f"{text!r} re-serialises as {str(address)!r}"


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

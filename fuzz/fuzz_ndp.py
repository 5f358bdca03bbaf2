"""Fuzz the Neighbour Discovery frame reader (failoverd.system.ndp.parse_frame).

Invariants:
- ``parse_frame`` never raises: any frame is a valid NS/NA or None;
- what it accepts is an NS or NA with hop limit 255, code 0 and a right
  checksum, and building the packet it read gives a frame it reads back as
  the same packet (the reader and the writer agree on every field).

Run: fuzz/run.sh fuzz_ndp SECONDS
"""

import sys

import atheris

# The reader's module only: Trio and pyroute2 (imported by ndp's socket half) are imported first,
# uninstrumented, or instrumenting them would take minutes and fuzz nothing of ours.
import trio  # noqa: F401

import failoverd.system.namespace  # noqa: F401
import failoverd.system.netlink  # noqa: F401

with atheris.instrument_imports():
    from failoverd.system import ndp


def TestOneInput(data: bytes) -> None:
    packet = ndp.parse_frame(data)
    if packet is None:
        return
    assert packet.kind in (ndp.NEIGHBOUR_SOLICITATION, ndp.NEIGHBOUR_ADVERTISEMENT)
    assert data[21] == ndp.HOP_LIMIT
    rebuilt = ndp.parse_frame(ndp.build_frame(packet, data[:6]))
    assert rebuilt == packet, (packet, rebuilt)
    assert packet.claimed is None or not packet.claimed.is_unspecified


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

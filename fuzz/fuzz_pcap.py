"""Fuzz the capture reader (failoverd.analysis.pcapimport): frames and whole files.

The first byte chooses the mode. Frames (even): the rest is one frame of the
link type the byte's half picks. Invariants:
- reading it gives a datagram or nothing, or the capture error that names
  packet 1; nothing else is ever raised;
- a datagram's sender is an IPv4 or IPv6 address (with a ``%scope`` only
  when it needs one: link-local, or multicast of link scope or less) and its
  payload is bytes of the frame;
- for Ethernet, the fast path (which ``read_capture`` takes for the common
  IPv4 frame) and the general parser agree on every frame.
Files (odd): the rest is a whole pcap or pcapng file; reading it returns a
capture or raises :class:`CaptureError`, never anything else.

Run: fuzz/run.sh fuzz_pcap SECONDS
"""

import ipaddress
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from failoverd.analysis import pcapimport
    from failoverd.core.addresses import needs_scope

LINK_TYPES = sorted(pcapimport.SUPPORTED_LINK_TYPES)
PORT = 1694
_FILE = os.path.join(tempfile.mkdtemp(prefix="fuzz-pcap-"), "capture")


def _check_sender(source: str) -> None:
    address, percent, scope = source.partition("%")
    parsed = ipaddress.ip_address(address)
    assert str(parsed) == address, source
    if percent:
        # needs_scope: link-local unicast, and multicast of link scope or less (a forged sender
        # such as ff80::1 is spelled as the daemon's trace spells it, with the path as its scope).
        assert isinstance(parsed, ipaddress.IPv6Address) and needs_scope(parsed) and scope, source


def _frame(mode: int, frame: bytes) -> None:
    linktype = LINK_TYPES[(mode >> 1) % len(LINK_TYPES)]
    path = "eth1" if mode & 0x80 else pcapimport.DEFAULT_PATH
    try:
        capture = pcapimport._collect([((1.0, frame), linktype, path)], "fuzz", PORT, False, "pcap")
    except pcapimport.CaptureError as exc:
        assert exc.packet == 1, exc
        return
    assert capture.packets == 1 and len(capture.datagrams) + capture.ignored == 1
    for _, seen_on, source, payload, _ in capture.datagrams:
        assert seen_on == path
        _check_sender(source)
        assert payload in frame
    if linktype == pcapimport.LINKTYPE_ETHERNET:
        try:
            general = pcapimport._udp_to_port(frame, linktype, PORT)
        except pcapimport._BadFrame:
            raise AssertionError("the fast path kept a frame the general parser refuses") from None
        fast = [(source, payload) for _, _, source, payload, _ in capture.datagrams]
        assert fast == ([] if general is None else [(pcapimport.source_text(general[0], path), general[1])])


def _file(data: bytes) -> None:
    with open(_FILE, "wb") as f:
        f.write(data)
    try:
        capture = pcapimport.read_capture(_FILE, port=PORT, skip_bad=bool(data and data[-1] & 1))
    except pcapimport.CaptureError:
        return
    for _, _, source, _, _ in capture.datagrams:
        _check_sender(source)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        _file(data[1:])
    else:
        _frame(data[0], data[1:])


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""Heartbeats out of pcap and pcapng captures, and their replay through failoverctl."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import dpkt
import pytest
from pcapng import FileWriter, blocks

from failoverd.analysis.pcapimport import CaptureError, heartbeat_senders, read_capture
from failoverd.core import wire
from failoverd.programs import failoverctl_replay

KEY = b"capture-test-key-0123456789"


def ip_udp(src: str, payload: bytes, dport: int = 1694, frag: int = 0) -> bytes:
    udp = dpkt.udp.UDP(sport=40000, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton("10.0.0.2"), p=17, data=udp)
    ip.len = len(ip)
    raw = bytearray(bytes(ip))
    struct.pack_into(">H", raw, 6, frag)  # flags and fragment offset
    if frag:
        raw[10:12] = b"\x00\x00"  # (checksum not rechecked by the reader)
    return bytes(raw)


def ethernet(packet: bytes, vlan: bool = False, ethertype: int = 0x0800) -> bytes:
    head = b"\x04" * 6 + b"\x02" * 6
    if vlan:
        head += struct.pack(">HH", 0x8100, 42)
    frame = head + struct.pack(">H", ethertype) + packet
    return frame + b"\x00" * max(0, 60 - len(frame))  # the NIC's padding to the minimum frame


def write_pcap(path: Path, frames: list[tuple[float, bytes]], linktype: int = dpkt.pcap.DLT_EN10MB) -> Path:
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=linktype)
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
    return path


def legacy_day(path: Path, times: list[float], src: str = "10.0.0.1") -> Path:
    return write_pcap(path, [(t, ethernet(ip_udp(src, b"heartbeat"))) for t in times])


def test_only_heartbeat_datagrams_are_kept_without_padding(tmp_path: Path) -> None:
    frames = [
        (100.0, ethernet(ip_udp("10.0.0.1", b"heartbeat"))),
        (100.1, ethernet(ip_udp("10.0.0.1", b"heartbeat"), vlan=True)),
        (100.2, ethernet(b"\x00" * 28, ethertype=0x0806)),  # ARP
        (100.3, ethernet(ip_udp("10.0.0.1", b"dns?", dport=53))),
        (100.4, ethernet(ip_udp("10.0.0.1", b"heartbeat", frag=0x2000))),  # first fragment
        (100.5, ethernet(ip_udp("10.0.0.7", b""))),
    ]
    capture = read_capture(write_pcap(tmp_path / "c.pcap", frames))
    assert [(t, source, data, path) for t, path, source, data, _ in capture.datagrams] == [
        (100.0, "10.0.0.1", b"heartbeat", "capture"),
        (100.1, "10.0.0.1", b"heartbeat", "capture"),
        (100.5, "10.0.0.7", b"", "capture"),
    ]
    assert (capture.packets, capture.ignored, capture.format) == (6, 3, "pcap")
    assert (capture.start, capture.end) == (100.0, 100.5)


@pytest.mark.parametrize(
    "linktype, frame",
    [
        (113, b"\x00\x00\x00\x01\x00\x06" + b"\x02" * 6 + b"\x00\x00" + b"\x08\x00" + ip_udp("10.0.0.1", b"hb")),
        (276, b"\x08\x00\x00\x00\x00\x00\x00\x03\x00\x01\x00\x06" + b"\x02" * 8 + ip_udp("10.0.0.1", b"hb")),
        (101, ip_udp("10.0.0.1", b"hb")),
        (0, b"\x02\x00\x00\x00" + ip_udp("10.0.0.1", b"hb")),
    ],
    ids=["linux-cooked", "linux-cooked-v2", "raw-ip", "bsd-loopback"],
)
def test_link_types(tmp_path: Path, linktype: int, frame: bytes) -> None:
    capture = read_capture(write_pcap(tmp_path / "c.pcap", [(5.0, frame)], linktype=linktype))
    assert [(source, data) for _, _, source, data, _ in capture.datagrams] == [("10.0.0.1", b"hb")]


def test_pcapng_names_the_interface(tmp_path: Path) -> None:
    shb = blocks.SectionHeader(options={"shb_userappl": "test"})
    shb.new_member(blocks.InterfaceDescription, link_type=1, options={"if_name": "eth1"})
    shb.new_member(blocks.InterfaceDescription, link_type=1)
    path = tmp_path / "c.pcapng"
    with open(path, "wb") as f:
        writer = FileWriter(f, shb)
        for i, (interface, src) in enumerate([(0, "10.0.0.1"), (1, "10.0.1.1"), (0, "10.0.0.1")]):
            ts = int((200 + i * 0.5) * 1_000_000)
            writer.write_block(shb.new_member(
                blocks.EnhancedPacket, interface_id=interface, timestamp_high=ts >> 32,
                timestamp_low=ts & 0xFFFFFFFF, packet_data=ethernet(ip_udp(src, b"heartbeat"))))
    capture = read_capture(path)
    assert [(t, path, source) for t, path, source, _, _ in capture.datagrams] == [
        (200.0, "eth1", "10.0.0.1"), (200.5, "if1", "10.0.1.1"), (201.0, "eth1", "10.0.0.1")]
    assert capture.format == "pcapng"


def test_cut_short_and_backwards_packets(tmp_path: Path) -> None:
    good = ethernet(ip_udp("10.0.0.1", b"heartbeat"))
    short = ethernet(ip_udp("10.0.0.1", b"heartbeat" * 10))[:60]
    path = write_pcap(tmp_path / "c.pcap", [(1.0, good), (2.0, short), (3.0, good), (2.5, good), (4.0, good)])
    with pytest.raises(CaptureError, match=r"c.pcap: packet 2: UDP datagram of 98 bytes cut short"):
        read_capture(path)
    capture = read_capture(path, skip_bad=True)
    assert [t for t, *_ in capture.datagrams] == [1.0, 3.0, 4.0]
    assert [n for n, _ in capture.skipped] == [2, 4]
    assert "earlier than the previous packet" in capture.skipped[1][1]


def test_a_capture_cut_off_inside_a_record_header(tmp_path: Path) -> None:
    # tcpdump killed mid-write leaves a partial record at the end.
    good = ethernet(ip_udp("10.0.0.1", b"heartbeat"))
    path = write_pcap(tmp_path / "c.pcap", [(1.0, good), (2.0, good)])
    path.write_bytes(path.read_bytes() + b"\x00" * 9)
    with pytest.raises(CaptureError, match=r"c.pcap: packet 3: the file ends inside this packet's record"):
        read_capture(path)
    capture = read_capture(path, skip_bad=True)
    assert [t for t, *_ in capture.datagrams] == [1.0, 2.0]
    assert capture.skipped == [(3, "the file ends inside this packet's record (capture cut off?)")]


def test_not_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"hello world")
    with pytest.raises(CaptureError, match="not a pcap or pcapng file"):
        read_capture(path)


def test_senders_and_what_is_missing(tmp_path: Path) -> None:
    sealer = wire.Sealer(KEY, wire.ROLE_MASTER, 1, 1.0, 0.0)
    status = wire.Sealer(KEY, wire.ROLE_BACKUP, 2, 1.0, 0.0)
    frames = [(float(t), ethernet(ip_udp("10.0.0.1", sealer.seal(float(t), holds=False)))) for t in range(1, 5)]
    frames += [(4.5, ethernet(ip_udp("10.0.0.2", status.seal(4.5, holds=False))))]
    capture = read_capture(write_pcap(tmp_path / "a.pcap", frames))
    with pytest.raises(ValueError, match=r"holds 5 authenticated heartbeats .* needs the shared key, --key-file FILE"):
        heartbeat_senders(capture.datagrams, key=None, legacy_message=b"heartbeat")
    assert heartbeat_senders(capture.datagrams, key=KEY, legacy_message=b"heartbeat") == {"10.0.0.1": 4}
    with pytest.raises(ValueError, match="none of the 5 authenticated heartbeats verifies with this key"):
        heartbeat_senders(capture.datagrams, key=b"some-other-key-0123456", legacy_message=b"heartbeat")


# --- replay of captures through failoverctl -----------------------------------------


def test_replay_of_a_legacy_capture_needs_no_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = legacy_day(tmp_path / "day.pcap", [1000.0 + t for t in range(20)] + [1030.0 + t for t in range(5)])
    assert failoverctl_replay.main(["replay", str(pcap), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    summary = out["summary"]
    assert (summary["mode"], summary["datagrams"], summary["accepted"], summary["failovers"]) == ("what-if", 25, 25, 1)
    assert out["failovers"][0]["detection_s"] == 3.0
    assert out["failovers"][0]["last_heartbeat_at"] == 19.0
    assert summary["longest_silence_s"] == 11.0


def test_several_senders_need_master(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = [(float(t), ethernet(ip_udp("10.0.0.1", b"heartbeat"))) for t in range(1, 10)]
    frames += [(t + 0.5, ethernet(ip_udp("10.9.9.9", b"heartbeat"))) for t in range(1, 4)]
    pcap = write_pcap(tmp_path / "two.pcap", sorted(frames))
    assert failoverctl_replay.main(["replay", str(pcap)]) == 64
    assert "heartbeats from several senders: 10.0.0.1 (9), 10.9.9.9 (3); say which is the master with --master" \
        in capsys.readouterr().err
    assert failoverctl_replay.main(["replay", str(pcap), "--master", "10.0.0.1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["accepted"] == 9 and summary["rejected"] == {"source": 3}


def test_authenticated_capture_needs_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sealer = wire.Sealer(KEY, wire.ROLE_MASTER, 1, 1.0, 0.0)
    frames = [(float(t), ethernet(ip_udp("10.0.0.1", sealer.seal(float(t), holds=False)))) for t in range(1, 10)]
    # The capture runs on (an ARP frame at 20 s) after the master's last heartbeat at 9 s.
    frames.append((20.0, ethernet(b"\x00" * 28, ethertype=0x0806)))
    pcap = write_pcap(tmp_path / "auth.pcap", frames)
    assert failoverctl_replay.main(["replay", str(pcap)]) == 64
    assert "needs the shared key, --key-file FILE" in capsys.readouterr().err
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    os.chmod(key_file, 0o600)
    assert failoverctl_replay.main(["replay", str(pcap), "--key-file", str(key_file), "--json",
                                    "--address", "eth0:192.0.2.10/24"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["accepted"] == 9 and out["summary"]["failovers"] == 1
    assert any(e["text"] == "eth0:192.0.2.10/24" for e in out["timeline"] if e["kind"] == "acquire")


def test_without_the_replay_extra_a_capture_is_refused_with_what_to_install(tmp_path: Path, monkeypatch) -> None:
    """dpkt and python-pcapng are the "replay" extra: the daemons and failoverctl status run without them."""
    from failoverd.analysis import pcapimport

    monkeypatch.setattr(pcapimport, "dpkt", None)
    pcap = legacy_day(tmp_path / "day.pcap", [1000.0, 1001.0])
    with pytest.raises(CaptureError, match=r"pip install 'failoverd\[replay\]'"):
        read_capture(pcap)


# --- IPv6 -------------------------------------------------------------------------


def ip6_udp(src: str, payload: bytes, dport: int = 1694, extensions: list[tuple[int, bytes]] = (),
            last: int = 17) -> bytes:
    """An IPv6 packet to ``dport``: ``extensions`` are (header type, body padded to 8n-2 bytes), then ``last``."""
    udp = struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0) + payload
    chain = b""
    types = [kind for kind, _ in extensions] + [last]
    for (_, body), following in zip(extensions, types[1:]):
        assert (len(body) + 2) % 8 == 0
        chain += bytes([following, (len(body) + 2) // 8 - 1]) + body
    body = chain + udp
    header = struct.pack(">IHBB", 0x6000_0000, len(body), types[0], 64)
    return header + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "fd00::2") + body


def test_ipv6_datagrams_are_kept_and_spelled_as_the_daemon_spells_them(tmp_path: Path) -> None:
    hop_by_hop = (0, b"\x01\x04\x00\x00\x00\x00")  # PadN
    frames = [
        (10.0, ethernet(ip6_udp("fd00::1", b"heartbeat"), ethertype=0x86DD)),
        (10.1, ethernet(ip6_udp("fd00::1", b"heartbeat"), vlan=True, ethertype=0x86DD)),
        (10.2, ethernet(ip6_udp("fd00::1", b"heartbeat", extensions=[hop_by_hop]), ethertype=0x86DD)),
        (10.3, ethernet(ip6_udp("fd00::1", b"heartbeat", extensions=[(44, b"\x00" * 6)]), ethertype=0x86DD)),
        (10.4, ethernet(ip6_udp("fd00::1", b"\x87\x00", last=58), ethertype=0x86DD)),  # ICMPv6
        (10.5, ethernet(ip6_udp("fd00::1", b"heartbeat", dport=53), ethertype=0x86DD)),
        (10.6, ethernet(ip6_udp("::ffff:10.0.0.1", b"heartbeat"), ethertype=0x86DD)),
        (10.7, ethernet(ip6_udp("fe80::0:1", b"heartbeat"), ethertype=0x86DD)),
        (10.8, ethernet(ip_udp("10.0.0.1", b"heartbeat"))),
    ]
    capture = read_capture(write_pcap(tmp_path / "c.pcap", frames))
    assert [(t, source, data) for t, _, source, data, _ in capture.datagrams] == [
        (10.0, "fd00::1", b"heartbeat"),
        (10.1, "fd00::1", b"heartbeat"),
        (10.2, "fd00::1", b"heartbeat"),
        (10.6, "10.0.0.1", b"heartbeat"),
        (10.7, "fe80::1", b"heartbeat"),  # a pcap names no interface: no scope
        (10.8, "10.0.0.1", b"heartbeat"),
    ]
    assert (capture.packets, capture.ignored) == (9, 3)


@pytest.mark.parametrize(
    "linktype, frame",
    [
        (113, b"\x00\x00\x00\x01\x00\x06" + b"\x02" * 6 + b"\x00\x00" + b"\x86\xdd" + ip6_udp("fd00::1", b"hb")),
        (276, b"\x86\xdd\x00\x00\x00\x00\x00\x03\x00\x01\x00\x06" + b"\x02" * 8 + ip6_udp("fd00::1", b"hb")),
        (101, ip6_udp("fd00::1", b"hb")),
        (229, ip6_udp("fd00::1", b"hb")),
        (0, (10).to_bytes(4, "little") + ip6_udp("fd00::1", b"hb")),  # Linux AF_INET6
        (0, (28).to_bytes(4, "little") + ip6_udp("fd00::1", b"hb")),  # FreeBSD
        (108, (30).to_bytes(4, "big") + ip6_udp("fd00::1", b"hb")),  # macOS, network order
    ],
    ids=["linux-cooked", "linux-cooked-v2", "raw-ip", "raw-ipv6", "null-linux", "null-freebsd", "loop-macos"],
)
def test_ipv6_link_types(tmp_path: Path, linktype: int, frame: bytes) -> None:
    capture = read_capture(write_pcap(tmp_path / "c.pcap", [(5.0, frame)], linktype=linktype))
    assert [(source, data) for _, _, source, data, _ in capture.datagrams] == [("fd00::1", b"hb")]


def test_ipv6_frames_cut_short_are_bad_packets(tmp_path: Path) -> None:
    whole = ethernet(ip6_udp("fd00::1", b"heartbeat" * 10), ethertype=0x86DD)
    in_extension = ethernet(ip6_udp("fd00::1", b"", extensions=[(60, b"\x00" * 14)]), ethertype=0x86DD)[:14 + 41]
    path = write_pcap(tmp_path / "c.pcap", [(1.0, whole[:100]), (2.0, in_extension), (3.0, whole)])
    with pytest.raises(CaptureError, match=r"c.pcap: packet 1: UDP datagram of 98 bytes cut short at 46"):
        read_capture(path)
    capture = read_capture(path, skip_bad=True)
    assert [n for n, _ in capture.skipped] == [1, 2]
    assert "inside an IPv6 extension header" in capture.skipped[1][1]
    assert [t for t, *_ in capture.datagrams] == [3.0]


def _link_local_pcapng(path: Path, sends: list[tuple[float, int, bytes]], names: tuple[str, ...]) -> Path:
    """A pcapng with one Ethernet interface per name; ``sends``: (time, interface, UDP payload) from fe80::1."""
    shb = blocks.SectionHeader(options={"shb_userappl": "test"})
    for name in names:
        shb.new_member(blocks.InterfaceDescription, link_type=1, options={"if_name": name})
    with open(path, "wb") as f:
        writer = FileWriter(f, shb)
        for at, interface, payload in sends:
            ts = int(at * 1_000_000)
            writer.write_block(shb.new_member(
                blocks.EnhancedPacket, interface_id=interface, timestamp_high=ts >> 32, timestamp_low=ts & 0xFFFFFFFF,
                packet_data=ethernet(ip6_udp("fe80::1", payload), ethertype=0x86DD)))
    return path


def test_a_pcapng_gives_link_local_senders_their_scope(tmp_path: Path) -> None:
    path = _link_local_pcapng(tmp_path / "c.pcapng", [(1.0, 0, b"hb"), (1.5, 1, b"hb")], ("priv0", "pub0"))
    assert [source for _, _, source, _, _ in read_capture(path).datagrams] == ["fe80::1%priv0", "fe80::1%pub0"]


def test_replay_of_an_ipv6_capture_finds_the_master_with_or_without_its_scope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    os.chmod(key_file, 0o600)
    sealer = wire.Sealer(KEY, wire.ROLE_MASTER, 1, 1.0, 0.0)
    frames = [(float(t), ethernet(ip6_udp("fe80::1", sealer.seal(float(t), holds=False)), ethertype=0x86DD))
              for t in range(1, 10)]
    frames.append((20.0, ethernet(b"\x00" * 28, ethertype=0x0806)))
    pcap = write_pcap(tmp_path / "v6.pcap", frames)
    for master in ("fe80::1%priv0", "fe80::1", None):
        argv = ["replay", str(pcap), "--key-file", str(key_file), "--json", "--address", "eth0:2001:db8::10/64"]
        assert failoverctl_replay.main(argv + (["--master", master] if master else [])) == 0, capsys.readouterr().err
        out = json.loads(capsys.readouterr().out)
        assert out["summary"]["accepted"] == 9 and out["summary"]["failovers"] == 1, master
        assert any(e["text"] == "eth0:2001:db8::10/64" for e in out["timeline"] if e["kind"] == "acquire")

    assert failoverctl_replay.main(["replay", str(pcap), "--key-file", str(key_file), "--master", "fe80::2"]) == 64
    assert "no heartbeats from --master fe80::2 (senders: fe80::1)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        failoverctl_replay.main(["replay", str(pcap), "--master", "fe80::1%no/such"])
    assert exited.value.code == 64
    assert "--master: CNode: invalid IP address: 'fe80::1%no/such'" in capsys.readouterr().err


def test_a_bare_link_local_master_heard_on_two_interfaces_needs_its_scope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sends = [(1.0 + t, t % 2, b"heartbeat") for t in range(6)]
    path = _link_local_pcapng(tmp_path / "two.pcapng", sends, ("priv0", "priv1"))
    assert failoverctl_replay.main(["replay", str(path), "--master", "fe80::1"]) == 64
    assert ("sent heartbeats on several interfaces (fe80::1%priv0, fe80::1%priv1): name its scope, "
            "e.g. --master fe80::1%priv0") in capsys.readouterr().err
    assert failoverctl_replay.main(["replay", str(path), "--master", "fe80::1%priv1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["accepted"] == 3 and summary["rejected"] == {"source": 3}

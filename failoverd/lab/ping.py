"""A small ICMP echo client for the lab, so the lab needs no ``ping`` binary (none is installed here).

    python -m failoverd.lab.ping [-6] [--count N] [--interval S] [--wait S] [--json] ADDRESS

Run it inside a namespace (``ip netns exec``; ``Lab.ping`` does). Like ping(8) it prints one line
per reply, marks duplicates with ``(DUP!)`` and ends with a summary; it also notices replies that
arrive out of order. ``--json`` prints one JSON object instead. Exit status: 0 if any reply came
back, 1 if none, 2 on bad usage or a socket error.

It needs a raw socket (root, which the lab is) and sends ``count`` requests exactly: no retries.
An IPv6 address is pinged with ICMPv6 echo (``-6`` as in ping(8) is accepted, and implied by the
address); the kernel fills in ICMPv6 checksums on a raw ICMPv6 socket and hands replies up without
their IP header.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, field

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
PAYLOAD = b"failoverd-lab-ping".ljust(56, b".")


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(header + PAYLOAD), ident, seq) + PAYLOAD


def echo_request6(ident: int, seq: int) -> bytes:
    """ICMPv6 echo with its checksum left zero: the kernel computes it over the IPv6 pseudo-header."""
    return struct.pack("!BBHHH", ICMPV6_ECHO_REQUEST, 0, 0, ident, seq) + PAYLOAD


@dataclass
class PingResult:
    address: str
    sent: int = 0
    received: int = 0  # distinct sequence numbers answered
    duplicates: int = 0
    out_of_order: int = 0
    rtts: list[float] = field(default_factory=list)  # seconds, first reply of each sequence number
    lines: list[str] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 0.0

    def summary(self) -> str:
        dup = f", +{self.duplicates} duplicates" if self.duplicates else ""
        text = (f"{self.sent} packets transmitted, {self.received} received{dup}, "
                f"{self.loss * 100:.0f}% packet loss")
        if self.rtts:
            text += (f", rtt min/avg/max = {min(self.rtts) * 1e3:.3f}/"
                     f"{sum(self.rtts) / len(self.rtts) * 1e3:.3f}/{max(self.rtts) * 1e3:.3f} ms")
        return text

    def to_dict(self) -> dict:
        return {**asdict(self), "loss": self.loss}

    @classmethod
    def from_dict(cls, raw: dict) -> PingResult:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def ping(address: str, count: int, interval: float, wait: float, echo: bool = False,
         linger: bool = False) -> PingResult:
    """Send ``count`` echo requests ``interval`` apart; collect replies until ``wait`` after the last.

    Like ping(8) it stops as soon as every request is answered, unless ``linger`` (then it waits
    the full time, to see late duplicates).
    """
    result = PingResult(address)
    ident = os.getpid() & 0xFFFF
    sent_at: dict[int, float] = {}
    answered: set[int] = set()
    highest = 0
    ipv6 = ":" in address
    if ipv6:
        family, protocol, request, reply_type = socket.AF_INET6, socket.IPPROTO_ICMPV6, echo_request6, ICMPV6_ECHO_REPLY
    else:
        family, protocol, request, reply_type = socket.AF_INET, socket.IPPROTO_ICMP, echo_request, ICMP_ECHO_REPLY
    with socket.socket(family, socket.SOCK_RAW, protocol) as sock:
        next_send = time.monotonic()
        deadline = next_send + (count - 1) * interval + wait
        while True:
            now = time.monotonic()
            if result.sent < count and now >= next_send:
                seq = result.sent + 1
                sent_at[seq] = now
                try:
                    sock.sendto(request(ident, seq), (address, 0))
                except OSError as exc:  # e.g. no route while a link is down: the request is lost
                    _say(result, f"send icmp_seq={seq}: {exc.strerror}", echo)
                result.sent += 1
                next_send += interval
                continue
            wake = min(next_send, deadline) if result.sent < count else deadline
            if result.sent >= count and (now >= deadline or (result.received >= count and not linger)):
                break
            sock.settimeout(max(wake - now, 0.0005))
            try:
                packet, source = sock.recvfrom(65535)
            except TimeoutError:
                continue
            arrived = time.monotonic()
            peer = source[0]
            header_len = 0 if ipv6 else (packet[0] & 0x0F) * 4
            if len(packet) < header_len + 8 or not _same(peer, address):
                continue
            icmp_type, _, _, reply_ident, seq = struct.unpack_from("!BBHHH", packet, header_len)
            if icmp_type != reply_type or reply_ident != ident or seq not in sent_at:
                continue
            rtt = arrived - sent_at[seq]
            line = f"{len(packet) - header_len} bytes from {peer}: icmp_seq={seq} time={rtt * 1e3:.3f} ms"
            if seq in answered:
                result.duplicates += 1
                line += " (DUP!)"
            else:
                result.received += 1
                result.rtts.append(rtt)
                answered.add(seq)
                if seq < highest:
                    result.out_of_order += 1
                    line += " (out of order)"
                highest = max(highest, seq)
            _say(result, line, echo)
    return result


def _same(peer: str, address: str) -> bool:
    return ipaddress.ip_address(peer.partition("%")[0]) == ipaddress.ip_address(address.partition("%")[0])


def _say(result: PingResult, line: str, echo: bool) -> None:
    result.lines.append(line)
    if echo:
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m failoverd.lab.ping", description=__doc__.split("\n")[0])
    parser.add_argument("address", help="IPv4 or IPv6 address to ping")
    parser.add_argument("-6", dest="ipv6", action="store_true", help="the address is IPv6 (as ping -6)")
    parser.add_argument("-c", "--count", type=int, default=5)
    parser.add_argument("-i", "--interval", type=float, default=0.2, help="seconds between requests")
    parser.add_argument("-W", "--wait", type=float, default=1.0, help="seconds to wait after the last request")
    parser.add_argument("--linger", action="store_true",
                        help="wait the full --wait even when every request is answered (to see duplicates)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    try:
        address = ipaddress.ip_address(args.address.partition("%")[0])
    except ValueError:
        parser.error(f"{args.address!r} is not an IPv4 or IPv6 address")
    if args.ipv6 and address.version != 6:
        parser.error(f"-6 given, but {args.address!r} is not an IPv6 address")
    if not 1 <= args.count <= 100_000:
        parser.error("--count must be between 1 and 100000")
    if not 0.001 <= args.interval <= 60 or not 0 <= args.wait <= 600:
        parser.error("--interval must be 0.001..60 s and --wait 0..600 s")
    try:
        result = ping(args.address, args.count, args.interval, args.wait, echo=not args.json,
                      linger=args.linger)
    except OSError as exc:
        print(f"ping: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"--- {args.address} ping statistics ---\n{result.summary()}")
    return 0 if result.received else 1


if __name__ == "__main__":
    sys.exit(main())

"""One-line descriptions of Ethernet frames for the emulator's per-frame log.

Only the few headers a failover lab cares about are decoded (ARP, IPv4 with ICMP/UDP/TCP), by
slicing: the log must keep up with the wire. Anything else is described by its EtherType.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
_IP_PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP"}


def _ip(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def describe(frame: bytes) -> str:
    if len(frame) < 14:
        return f"runt frame ({len(frame)} bytes)"
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    payload = frame[14:]
    if ethertype == ETH_P_ARP and len(payload) >= 28:
        (op,) = struct.unpack_from("!H", payload, 6)
        sender, target = _ip(payload[14:18]), _ip(payload[24:28])
        if op == 1:
            if sender == "0.0.0.0":
                return f"ARP probe who-has {target}"
            if sender == target:
                return f"ARP announce {sender} is-at {payload[8:14].hex(':')}"
            return f"ARP who-has {target} tell {sender}"
        if op == 2:
            return f"ARP reply {sender} is-at {payload[8:14].hex(':')}"
        return f"ARP op {op}"
    if ethertype == ETH_P_IP and len(payload) >= 20:
        ihl = (payload[0] & 0x0F) * 4
        proto = payload[9]
        src, dst = _ip(payload[12:16]), _ip(payload[16:20])
        name = _IP_PROTOCOLS.get(proto, f"proto {proto}")
        l4 = payload[ihl:]
        if proto == 1 and len(l4) >= 8:
            icmp_type, _, _, ident, seq = struct.unpack_from("!BBHHH", l4)
            kind = {8: "echo request", 0: "echo reply"}.get(icmp_type, f"type {icmp_type}")
            return f"IPv4 {src} > {dst} ICMP {kind} id {ident} seq {seq}"
        if proto in (6, 17) and len(l4) >= 4:
            sport, dport = struct.unpack_from("!HH", l4)
            return f"IPv4 {src}:{sport} > {dst}:{dport} {name} {len(l4)} bytes"
        return f"IPv4 {src} > {dst} {name}"
    if ethertype == ETH_P_IPV6:
        return "IPv6"
    return f"ethertype 0x{ethertype:04x}"

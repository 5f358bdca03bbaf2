"""Prepare one lab namespace from inside it (run through ``ip netns exec``).

    python -m failoverd.lab.nsprep [--no-ipv6 | --quiet-ipv6 IFACE ...] [--no-offload IFACE ...]

``--no-ipv6`` turns IPv6 off in the namespace, before any link is up, so the lab's LANs carry only
the traffic the tests and daemons make (no router solicitations, MLD or DAD chatter in the
emulator's counters). ``--quiet-ipv6`` keeps IPv6 for the given interfaces (an IPv6 lab) but as
quiet as it can be: no router solicitations and no kernel DAD (the lab's own addresses are
unique by construction and usable at once; failoverd's DAD is its own), ``ndisc_notify`` off,
so every Neighbour Advertisement on the wire is one a test or a daemon sent or caused, and
``keep_addr_on_down`` on, so a host whose links go down keeps its IPv6 addresses as it keeps IPv4. ``--no-offload`` turns off transmit checksum and segmentation offloads on a
veth: a frame that leaves a veth with its checksum still to be filled in ("partial") is read that
way by the emulator's raw socket and would reach the other host with a wrong UDP/TCP checksum and
be dropped. With the offloads off the kernel checksums (and segments) in software before sending.
There is no ``ethtool`` binary on these machines, so this speaks the SIOCETHTOOL ioctl itself.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import socket
import struct
import sys

SIOCETHTOOL = 0x8946
# Legacy ethtool "set" commands; each takes a struct ethtool_value {u32 cmd; u32 data}.
ETHTOOL_STXCSUM = 0x17
ETHTOOL_SSG = 0x19
ETHTOOL_STSO = 0x1F
ETHTOOL_SGSO = 0x24
ETHTOOL_SGRO = 0x2C
OFFLOADS = {
    "tso": ETHTOOL_STSO,
    "gso": ETHTOOL_SGSO,
    "gro": ETHTOOL_SGRO,
    "sg": ETHTOOL_SSG,
    "tx-checksum": ETHTOOL_STXCSUM,
}


def disable_offloads(ifname: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name, command in OFFLOADS.items():
            value = ctypes.create_string_buffer(struct.pack("II", command, 0))
            ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
            try:
                fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot turn {name} off on {ifname}: {exc.strerror}") from None


def write_sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/{path}", "w", encoding="ascii") as f:
        f.write(value)


def disable_ipv6() -> None:
    for scope in ("all", "default"):
        write_sysctl(f"net/ipv6/conf/{scope}/disable_ipv6", "1")


def quiet_ipv6(interfaces: list[str]) -> None:
    for scope in ("all", "default", *interfaces):
        write_sysctl(f"net/ipv6/conf/{scope}/disable_ipv6", "0")
        write_sysctl(f"net/ipv6/conf/{scope}/accept_dad", "0")
        write_sysctl(f"net/ipv6/conf/{scope}/dad_transmits", "0")
        write_sysctl(f"net/ipv6/conf/{scope}/router_solicitations", "0")
        write_sysctl(f"net/ipv6/conf/{scope}/ndisc_notify", "0")
        # As IPv4 does, and as a dead host's must be when its links come back: addresses survive a link down.
        write_sysctl(f"net/ipv6/conf/{scope}/keep_addr_on_down", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m failoverd.lab.nsprep", description=__doc__.split("\n")[0])
    ipv6 = parser.add_mutually_exclusive_group()
    ipv6.add_argument("--no-ipv6", action="store_true", help="turn IPv6 off in this namespace")
    ipv6.add_argument("--quiet-ipv6", nargs="+", default=[], metavar="IFACE",
                      help="IPv6 on, without router solicitations or kernel DAD, on these interfaces")
    parser.add_argument("--no-offload", nargs="*", default=[], metavar="IFACE",
                        help="turn checksum/segmentation offloads off on these interfaces")
    args = parser.parse_args(argv)
    try:
        if args.no_ipv6:
            disable_ipv6()
        if args.quiet_ipv6:
            quiet_ipv6(args.quiet_ipv6)
        for ifname in args.no_offload:
            disable_offloads(ifname)
    except OSError as exc:
        print(f"nsprep: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A minimal packet capture for the lab tests: every frame on one interface into a pcap file.

Run inside a lab namespace: ``python tests/_capture.py IFACE OUT.pcap SECONDS``. It prints
``ready`` once its socket is bound (frames from then on are in the file) and stops on SIGTERM or
after SECONDS, whichever comes first, closing the file whole. Real frames as tcpdump would see
them (an AF_PACKET socket, outgoing frames included), written by dpkt, so a test can hand
failoverctl replay a capture of a live pair without tcpdump on the machine.
"""

from __future__ import annotations

import select
import signal
import socket
import sys
import time

import dpkt

ETH_P_ALL = 0x0003


def main(interface: str, out: str, seconds: float) -> None:
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as raw, open(out, "wb") as f:
        raw.bind((interface, 0))
        writer = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        print("ready", flush=True)
        last = 0.0
        while not stopping and time.monotonic() < deadline:
            try:
                readable, _, _ = select.select([raw], [], [], 0.05)
            except InterruptedError:
                continue
            if readable:
                frame = raw.recv(65535)
                last = max(last, time.time())  # a capture's clock never goes back
                writer.writepkt(frame, ts=last)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))

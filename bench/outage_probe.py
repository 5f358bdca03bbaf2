#!/usr/bin/env python3
"""The client's view of a failover (scenario 4 of bench/peers.py): a tiny UDP echo service and its client.

    outage_probe.py serve --port 17007 [--limit 3600] # on every host that may hold the VIP
    outage_probe.py probe --address VIP --port 17007  # on the client; stdin closed = stop

``serve`` answers every datagram with itself, on every address of the host (it binds the wildcard,
so it answers on the VIP exactly while the host holds it). ``probe`` sends a numbered request every
``--every`` seconds (10 ms) from an unbound-source socket and matches the answers by number (an
answer's source may be the host's own address rather than the VIP: the kernel picks it; the number
is what counts). It stops when its stdin is closed or after ``--count`` requests, waits ``--wait``
seconds for late answers, and prints one JSON object: each request's send time (``time.time()``,
the same clock in every namespace) and whether it was answered within ``--wait``.

Resource handling: one socket, closed on exit; every loop is bounded (``--count``, ``--limit``). Error
handling: a socket error on send is a failed request, not an exit (the VIP's neighbour may be
unresolved for a while, which is what is being measured).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time

REQUEST = struct.Struct("!Q")


def serve(port: int, limit: float) -> int:
    deadline = time.monotonic() + limit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        sock.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                data, peer = sock.recvfrom(64)
            except TimeoutError:
                continue
            try:
                sock.sendto(data, peer)
            except OSError:
                pass  # the client's neighbour entry not resolved yet: it counts a failure
    return 0


def probe(address: str, port: int, every: float, count: int, wait: float) -> int:
    sent: list[float] = []
    answered_at: dict[int, float] = {}
    stdin = sys.stdin.fileno()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)

        def receive() -> None:
            while True:
                try:
                    data = sock.recv(64)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    continue  # an ICMP error queued on the socket: that request just fails
                if len(data) == REQUEST.size:
                    answered_at.setdefault(REQUEST.unpack(data)[0], time.time())

        start = time.monotonic()
        watching = [sock, stdin]
        while len(sent) < count:
            due = start + len(sent) * every
            now = time.monotonic()
            if now >= due:
                sent.append(time.time())
                try:
                    sock.sendto(REQUEST.pack(len(sent) - 1), (address, port))
                except OSError:
                    pass  # no route or neighbour yet: a failed request
                continue
            readable, _, _ = select.select(watching, [], [], due - now)
            if sock in readable:
                receive()
            if stdin in readable and not os.read(stdin, 4096):
                break
        end = time.monotonic() + wait
        while (left := end - time.monotonic()) > 0:
            if select.select([sock], [], [], left)[0]:
                receive()
    answered = [answered_at.get(i, float("inf")) - at <= wait for i, at in enumerate(sent)]
    json.dump({"every": every, "wait": wait, "sent": sent, "answered": answered}, sys.stdout)
    sys.stdout.write("\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    server = sub.add_parser("serve")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--limit", type=float, default=3600.0, help="exit after this many seconds (default 3600)")
    client = sub.add_parser("probe")
    client.add_argument("--address", required=True)
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--every", type=float, default=0.01, help="seconds between requests (default 0.01)")
    client.add_argument("--count", type=int, default=10000, help="at most this many requests (default 10000)")
    client.add_argument("--wait", type=float, default=0.2,
                        help="an answer later than this many seconds is a failure (default 0.2)")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        return serve(args.port, args.limit)
    if args.every <= 0 or args.count < 1 or args.wait < 0:
        parser.error("--every must be positive, --count at least 1, --wait not negative")
    return probe(args.address, args.port, args.every, args.count, args.wait)


if __name__ == "__main__":
    sys.exit(main())

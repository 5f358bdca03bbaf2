"""The wire: a Trio process that carries Ethernet frames between the lab's hosts, impaired.

It runs inside the lab's ``wire`` namespace, where the peer of every host interface lives. One
AF_PACKET socket per port reads what a host sends; the :class:`~failoverd.lab.fabric.Fabric`
decides where each frame goes, when, and how many times; a single scheduler task sends the copies
when they fall due. Frames the kernel shows us going *out* of a port are our own and are ignored.

    python -m failoverd.lab.emulator --config wire.json

The configuration names the lab, the seed, the ports (``{"pub": {"master": "master-pub", ...}}``),
the control socket path, an optional per-frame log path and an optional owner PID: when the owner
exits (for instance a test run killed with SIGKILL), the emulator exits too.

Resource handling: every socket is closed and the control socket's path removed on the way out,
whatever the reason (shutdown request, SIGTERM/SIGINT, owner gone, error). The final counters are
written to the log (stderr) on every exit.

Error handling: a bad configuration exits with status 2 and one line saying what is wrong; a frame
that cannot be sent is counted (``send_errors``) and the wire carries on — a host whose link is
down must not stop the others' traffic.
"""

from __future__ import annotations

import argparse
import errno
import heapq
import itertools
import json
import logging
import os
import signal
import socket
import struct
import sys
from dataclasses import dataclass
from typing import IO, Any

import trio

from failoverd.lab.control import MAX_LINE, ControlError, LineBuffer, decode, encode
from failoverd.lab.fabric import Delivery, Fabric
from failoverd.lab.frames import describe

log = logging.getLogger("failoverd.lab.emulator")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_IGNORE_OUTGOING = 23
RECEIVE_BUFFER = 4 << 20


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    lab: str
    seed: int
    ports: dict[str, dict[str, str]]
    control: str
    frame_log: str | None = None
    owner_pid: int | None = None

    @classmethod
    def load(cls, path: str) -> Config:
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the configuration must be a JSON object")
        missing = {"lab", "seed", "ports", "control"} - set(raw)
        if missing:
            raise ConfigError(f"{path}: missing {', '.join(sorted(missing))}")
        ports = raw["ports"]
        if not isinstance(ports, dict) or not all(
            isinstance(hosts, dict) and len(hosts) >= 2 and all(isinstance(i, str) for i in hosts.values())
            for hosts in ports.values()
        ):
            raise ConfigError(f"{path}: ports must map each LAN to at least two host → interface names")
        if not isinstance(raw["seed"], int) or isinstance(raw["seed"], bool):
            raise ConfigError(f"{path}: seed must be an integer")
        if len(os.fsencode(raw["control"])) >= 108:
            raise ConfigError(f"{path}: control socket path too long for AF_UNIX: {raw['control']}")
        return cls(
            lab=str(raw["lab"]),
            seed=raw["seed"],
            ports=ports,
            control=raw["control"],
            frame_log=raw.get("frame_log"),
            owner_pid=raw.get("owner_pid"),
        )


def _ifindex(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise ConfigError(f"no interface {name!r} in this namespace") from None


async def open_port(ifname: str) -> trio.socket.SocketType:
    """A raw socket that sees every frame arriving on ``ifname``.

    Created with protocol 0 so it receives nothing until bound: otherwise frames of other
    interfaces could be queued on it in between and be forwarded as if they came from this port.
    """
    index = _ifindex(ifname)
    sock = trio.socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass  # older kernels: the per-frame PACKET_OUTGOING check below still applies
        mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        await sock.bind((ifname, ETH_P_ALL))
    except BaseException:
        sock.close()
        raise
    return sock


class Scheduler:
    """Sends each delivery when it falls due, earliest first, ties in arrival order."""

    def __init__(self, sockets: dict[tuple[str, str], trio.socket.SocketType]):
        self._sockets = sockets
        self._heap: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._wake = trio.Event()

    def push(self, delivery: Delivery) -> None:
        heapq.heappush(self._heap, (delivery.due, next(self._order), delivery))
        if self._heap[0][2] is delivery:
            self._wake.set()

    async def run(self) -> None:
        while True:
            if not self._heap:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            due = self._heap[0][0]
            if due > trio.current_time():
                with trio.move_on_at(due):
                    await self._wake.wait()
                if self._wake.is_set():
                    self._wake = trio.Event()
                continue
            _, _, delivery = heapq.heappop(self._heap)
            await self._send(delivery)

    async def _send(self, d: Delivery) -> None:
        try:
            await self._sockets[(d.lan, d.dst)].send(d.frame)
        except OSError as exc:
            d.link.counters.send_errors += 1
            if exc.errno not in (errno.ENETDOWN, errno.ENXIO, errno.ENOBUFS):
                log.warning("send on %s failed: %s", d.link.name, exc)
            return
        d.link.counters.delivered += 1

    @property
    def queued(self) -> int:
        return len(self._heap)


class Emulator:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.fabric = Fabric(
            config.lab, config.seed, {lan: tuple(hosts) for lan, hosts in config.ports.items()}
        )
        self.frame_log: IO[str] | None = None
        self.scheduler: Scheduler | None = None
        self._cancel = trio.CancelScope()
        self._stopping = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sockets: dict[tuple[str, str], trio.socket.SocketType] = {}
        try:
            for lan, hosts in self.config.ports.items():
                for host, ifname in hosts.items():
                    sockets[(lan, host)] = await open_port(ifname)
            if self.config.frame_log:
                self._open_frame_log(self.config.frame_log)
            self.scheduler = Scheduler(sockets)
            with self._cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.scheduler.run)
                    for (lan, host), sock in sockets.items():
                        nursery.start_soon(self._receive, lan, host, sock)
                    await nursery.start(self._serve_control)
                    nursery.start_soon(self._watch_signals)
                    if self.config.owner_pid:
                        nursery.start_soon(self._watch_owner, self.config.owner_pid)
                    log.info("wire of lab %s up: seed %d, ports %s", self.config.lab,
                             self.config.seed, json.dumps(self.config.ports))
                    task_status.started()
        finally:
            for sock in sockets.values():
                sock.close()
            if self.frame_log:
                self.frame_log.close()
            try:
                os.unlink(self.config.control)
            except FileNotFoundError:
                pass
            log.info("wire of lab %s down; counters of the links that carried frames:%s",
                     self.config.lab, self._summary() or " none")

    def _summary(self) -> str:
        lines = []
        for link in self.fabric.links.values():
            c = link.counters
            if c.offered:
                lines.append(f"\n  {link.name:22} offered {c.offered} delivered {c.delivered} lost {c.lost} "
                             f"blocked {c.blocked} duplicated {c.duplicated} reordered {c.reordered} "
                             f"send_errors {c.send_errors}")
        return "".join(lines)

    def _open_frame_log(self, path: str | None) -> None:
        if self.frame_log:
            self.frame_log.close()
            self.frame_log = None
        if path:
            self.frame_log = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - kept open, closed above

    async def _receive(self, lan: str, host: str, sock: trio.socket.SocketType) -> None:
        assert self.scheduler is not None
        while True:
            frame, address = await sock.recvfrom(65536)
            if address[2] == socket.PACKET_OUTGOING:
                continue
            now = trio.current_time()
            deliveries, outcomes = self.fabric.offer(lan, host, frame, now)
            for delivery in deliveries:
                self.scheduler.push(delivery)
            if self.frame_log and outcomes:
                self._log_frame(now, lan, host, frame, outcomes, deliveries)

    def _log_frame(self, now: float, lan: str, host: str, frame: bytes,
                   outcomes: list[Any], deliveries: list[Delivery]) -> None:
        assert self.frame_log is not None
        due: dict[str, list[float]] = {}
        for d in deliveries:
            due.setdefault(d.dst, []).append(round(d.due - now, 6))
        record = {
            "t": round(now, 6),
            "lan": lan,
            "src": host,
            "len": len(frame),
            "frame": describe(frame),
            "to": {link.dst: {"outcome": outcome, "delays": due.get(link.dst, [])}
                   for link, outcome in outcomes},
        }
        self.frame_log.write(json.dumps(record, separators=(",", ":")) + "\n")

    async def _serve_control(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        path = self.config.control
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener_sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: the wire obeys root only
        try:
            await listener_sock.bind(path)
        finally:
            os.umask(old_umask)
        listener_sock.listen(16)
        listener = trio.SocketListener(listener_sock)
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._control_session, stream)

    async def _control_session(self, stream: trio.SocketStream) -> None:
        buffer = LineBuffer()
        async with stream:
            try:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    for line in buffer.feed(data):
                        await stream.send_all(encode(self._control(line)))
                        if self._stopping:
                            # Only now: cancelling before the answer is sent would leave the
                            # requester without one, and it would fall back to a signal.
                            self._cancel.cancel()
                            return
            except (ControlError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.warning("control connection dropped: %s", exc)

    def _control(self, line: bytes) -> dict[str, Any]:
        try:
            request = decode(line)
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        op = request.get("op") if isinstance(request, dict) else None
        if op == "shutdown":
            log.info("shutdown requested over the control socket")
            self._stopping = True
            return {"ok": True}
        if op == "frame_log":
            path = request.get("path")
            if path is not None and not isinstance(path, str):
                return {"ok": False, "error": "frame_log path must be a string or null"}
            try:
                self._open_frame_log(path)
            except OSError as exc:
                return {"ok": False, "error": f"cannot open frame log: {exc}"}
            log.info("per-frame log %s", f"to {path}" if path else "off")
            return {"ok": True, "path": path}
        answer = self.fabric.apply(request)
        if op == "stats" and answer.get("ok") and self.scheduler:
            answer["queued"] = self.scheduler.queued
        if op not in ("stats", "ping"):
            log.info("control %s -> %s", json.dumps(request), json.dumps(answer))
        return answer

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                log.info("signal %s: stopping", signal.Signals(signum).name)
                self._cancel.cancel()
                return

    async def _watch_owner(self, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            log.info("owner process %d is already gone: stopping", pid)
            self._cancel.cancel()
            return
        try:
            await trio.lowlevel.wait_readable(fd)
        finally:
            os.close(fd)
        log.info("owner process %d exited: stopping", pid)
        self._cancel.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m failoverd.lab.emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the wire's JSON configuration")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s wire[%(process)d] %(levelname)s %(message)s")
    try:
        config = Config.load(args.config)
        trio.run(Emulator(config).run)
    except ConfigError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["MAX_LINE", "Config", "ConfigError", "Emulator", "main"]

if __name__ == "__main__":
    sys.exit(main())

"""The whole emulated network as pure state: one switch per LAN, one :class:`Link` per direction.

The emulator feeds it frames (``offer``) and control requests (``apply``) and does the I/O it is
told to; the fabric itself never touches a socket or a clock, so every decision is reproducible
from the seed and the sequence of inputs.

Control requests are JSON objects with an ``op``; every answer is ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. Host selectors accept a host name or ``"*"`` (every member of the
LAN); ``lan`` accepts a LAN name or ``"*"``.

    {"op": "impair", "lan": "pub", "src": "client", "dst": "master", "settings": {"loss": 0.3}}
    {"op": "partition", "lan": "priv", "a": "master", "b": "backup"}      (both directions)
    {"op": "heal", "lan": "*", "a": "*", "b": "*"}                        (all three optional)
    {"op": "stats"}     {"op": "ping"}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from failoverd.lab.impairment import Impairment, ImpairmentError, Link
from failoverd.lab.switch import Switch
from failoverd.lab.topology import LANS, MEMBERS, TopologyError, check_lan, check_member

ANY = "*"


class RequestError(ValueError):
    """A control request that cannot be carried out, with the reason."""


@dataclass(frozen=True)
class Delivery:
    due: float
    lan: str
    dst: str
    frame: bytes
    link: Link


class Fabric:
    def __init__(self, lab_id: str, seed: int, members: dict[str, tuple[str, ...]] | None = None):
        self.lab_id = lab_id
        self.seed = seed
        self.members = {lan: tuple(hosts) for lan, hosts in (members or MEMBERS).items()}
        self.switches = {lan: Switch(hosts) for lan, hosts in self.members.items()}
        self.links: dict[tuple[str, str, str], Link] = {
            (lan, src, dst): Link(lan, src, dst, seed)
            for lan, hosts in self.members.items()
            for src in hosts
            for dst in hosts
            if src != dst
        }
        self.frames_in = {(lan, host): 0 for lan, hosts in self.members.items() for host in hosts}

    # --- frames ----------------------------------------------------------------------------------

    def offer(self, lan: str, src: str, frame: bytes, now: float) -> tuple[list[Delivery], list[tuple[Link, str]]]:
        """Switch and impair one frame sent by ``src`` on ``lan``.

        Returns the copies to deliver and, for the log, each link's outcome.
        """
        self.frames_in[(lan, src)] += 1
        deliveries: list[Delivery] = []
        outcomes: list[tuple[Link, str]] = []
        for dst in self.switches[lan].forward(frame, src, now):
            link = self.links[(lan, src, dst)]
            verdict = link.offer(now)
            outcomes.append((link, verdict.outcome))
            deliveries.extend(Delivery(due, lan, dst, frame, link) for due in verdict.deliveries)
        return deliveries, outcomes

    # --- control ---------------------------------------------------------------------------------

    def apply(self, request: Any) -> dict[str, Any]:
        try:
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise RequestError('a request is a JSON object with a string "op"')
            handler = self._handlers.get(request["op"])
            if handler is None:
                raise RequestError(
                    f"unknown op {request['op']!r}; known: {', '.join(sorted(self._handlers))}"
                )
            return {"ok": True, **handler(self, request)}
        except (RequestError, ImpairmentError, TopologyError) as exc:
            return {"ok": False, "error": str(exc)}

    def _select(self, lan: Any, src: Any, dst: Any) -> list[Link]:
        lans = self._lans(lan)
        chosen: list[Link] = []
        for one_lan in lans:
            srcs = self._hosts(one_lan, src, strict=len(lans) == 1)
            dsts = self._hosts(one_lan, dst, strict=len(lans) == 1)
            chosen.extend(
                self.links[(one_lan, s, d)] for s in srcs for d in dsts if s != d
            )
        return chosen

    def _lans(self, lan: Any) -> list[str]:
        if lan is None or lan == ANY:
            return list(self.members)
        if not isinstance(lan, str):
            raise RequestError(f"lan must be a string, not {lan!r}")
        if lan not in self.members:
            check_lan(lan)
            raise RequestError(f"LAN {lan!r} is not emulated here")
        return [lan]

    def _hosts(self, lan: str, host: Any, strict: bool) -> list[str]:
        if host is None or host == ANY:
            return list(self.members[lan])
        if not isinstance(host, str):
            raise RequestError(f"host must be a string, not {host!r}")
        if host in self.members[lan]:
            return [host]
        if strict:
            if lan in MEMBERS:
                check_member(lan, host)
            raise RequestError(f"host {host!r} is not on LAN {lan!r}")
        return []  # "*" over LANs: a host that is not on this LAN simply selects nothing here

    def _op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"lab": self.lab_id, "seed": self.seed}

    def _op_impair(self, request: dict[str, Any]) -> dict[str, Any]:
        if "src" not in request or "dst" not in request or "lan" not in request:
            raise RequestError('impair needs "lan", "src" and "dst" (each may be "*")')
        impairment = Impairment.from_dict(request.get("settings") or {})
        links = self._select(request["lan"], request["src"], request["dst"])
        if not links:
            raise RequestError("impair selected no link")
        for link in links:
            link.impairment = impairment
        return {"links": [link.name for link in links]}

    def _partition(self, request: dict[str, Any], partitioned: bool) -> list[str]:
        a, b = request.get("a"), request.get("b")
        links = self._select(request.get("lan"), a, b) + self._select(request.get("lan"), b, a)
        names = []
        for link in links:
            link.partitioned = partitioned
            if link.name not in names:
                names.append(link.name)
        return names

    def _op_partition(self, request: dict[str, Any]) -> dict[str, Any]:
        if "lan" not in request or "a" not in request:
            raise RequestError('partition needs "lan" and "a" ("b" defaults to every other host)')
        links = self._partition(request, True)
        if not links:
            raise RequestError("partition selected no link")
        return {"links": links}

    def _op_heal(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"links": self._partition(request, False)}

    def _op_stats(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.stats()

    _handlers: ClassVar[dict[str, Callable[..., dict[str, Any]]]] = {
        "ping": _op_ping,
        "impair": _op_impair,
        "partition": _op_partition,
        "heal": _op_heal,
        "stats": _op_stats,
    }

    def stats(self) -> dict[str, Any]:
        return {
            "lab": self.lab_id,
            "seed": self.seed,
            "links": [link.to_dict() for link in self.links.values()],
            "ports": [
                {"lan": lan, "host": host, "frames_in": count}
                for (lan, host), count in self.frames_in.items()
            ],
            "mac_tables": {lan: switch.table() for lan, switch in self.switches.items()},
        }


__all__ = ["ANY", "LANS", "Delivery", "Fabric", "RequestError"]

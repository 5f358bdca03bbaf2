"""The network-namespace lab: master, backup and client hosts on two user-space emulated LANs.

See docs/lab.md. The public API::

    from failoverd.lab import Lab
    with Lab(seed=1) as lab:
        lab.impair("pub", "client", "master", delay=0.2)

The names below are imported on first use: the package's modules that run as programs
(``python -m failoverd.lab.emulator``, ``.ping``, ``.nsprep``) must not be imported by the package
before runpy executes them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ControlError": "failoverd.lab.control",
    "Impairment": "failoverd.lab.impairment",
    "ImpairmentError": "failoverd.lab.impairment",
    "Lab": "failoverd.lab.lab",
    "LabError": "failoverd.lab.lab",
    "Terminated": "failoverd.lab.lab",
    "NetnsError": "failoverd.lab.netns",
    "PingResult": "failoverd.lab.ping",
    "HOSTS": "failoverd.lab.topology",
    "LANS": "failoverd.lab.topology",
    "TopologyError": "failoverd.lab.topology",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'failoverd.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

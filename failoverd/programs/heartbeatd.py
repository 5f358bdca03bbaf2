"""heartbeatd(8): the master daemon's command line and start-up (see launch)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from failoverd.cli import options, preflight
from failoverd.cli.config import MasterConfig
from failoverd.cli.launch import run_program


def check_host(config: MasterConfig) -> None:
    preflight.require_interfaces(config.managed, "--manage")
    preflight.require_key_file(config.key_file)
    preflight.require_unicast_targets(config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_program(
        "heartbeatd",
        argv,
        options.parse_master,
        check_host,
        "failoverd.runtime.master",
        "heartbeatd controls system-wide resources (addresses, raw ARP sockets)",
    )


if __name__ == "__main__":
    sys.exit(main())

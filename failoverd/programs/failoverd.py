"""failoverd(8): the backup daemon's command line and start-up (see launch)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from failoverd.cli import options, preflight
from failoverd.cli.config import BackupConfig
from failoverd.cli.launch import run_program


def check_host(config: BackupConfig) -> None:
    preflight.require_interfaces(config.triplets, "pub_addr")
    preflight.require_key_file(config.key_file)
    preflight.require_unicast_peers(config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_program(
        "failoverd",
        argv,
        options.parse_backup,
        check_host,
        "failoverd.runtime.backup",
        "failoverd controls system-wide resources (addresses, raw ARP sockets)",
    )


if __name__ == "__main__":
    sys.exit(main())

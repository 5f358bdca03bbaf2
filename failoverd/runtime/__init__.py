"""The Trio runtime that turns the sans-IO cores into the live daemons.

:mod:`failoverd.runtime.backup` (failoverd) and :mod:`failoverd.runtime.master`
(heartbeatd) each offer ``serve(config)`` (async, for tests and embedding) and
``run(config) -> int`` (what the programs call). The shared pieces: the
heartbeat socket (:mod:`.udp`), the action executor (:mod:`.executor`), the
timer and input loop around a core (:mod:`.shell`), the host adapter
(:mod:`.host`), the key file (:mod:`.keyfile`), the epoch (:mod:`.epoch`), and
signals and control-socket answers (:mod:`.lifecycle`).
"""

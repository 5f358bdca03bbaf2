"""failoverd's runtime: the backup's detector, live.

One nursery holds: the executor (address changes in order, probes and mail
beside it), the timer, the heartbeat receiver, the ARP conflict watcher (see
:mod:`failoverd.runtime.conflicts`), the health checks (see
:mod:`failoverd.runtime.health`: their first round runs before the detector
is built, and an unhealthy verdict is its first input), the link watch
(the links of the interfaces of the addresses it takes over, read at start
too: a backup whose link is down does not take over, and releases what it
holds; see :mod:`failoverd.system.linkwatch`), the control socket and the
signal watcher. See :mod:`failoverd.runtime.executor`
and :mod:`failoverd.runtime.shell` for how actions and time are handled.
With ``--etcd-endpoints`` the executor also carries out the detector's
claims on the etcd witness (:mod:`failoverd.runtime.claims`, whose client
runs in the nursery too), each request in a task of its own and bounded,
so a hung etcd never holds up a heartbeat.

Start-up reconciliation: addresses of the master that are already on our
interfaces (a backup restarted while holding them) are adopted as held,
never added twice; the detector then behaves as after a takeover, and the
master's next heartbeat releases them. They are announced (gratuitous ARP)
at once, so a master that holds them sees the conflict and answers with its
own announcement, and the backup yields without waiting for a heartbeat.

Stop (SIGTERM/SIGINT): inputs stop, queued changes are dropped, the address
change in progress finishes (its result reaches the detector, so what we
hold is exact), and then the stop goes to the detector (``Detector.shutdown``,
recorded in the trace like any input): it releases what it holds through
the PreRel/PostRel hooks, unless ``keep_addresses_on_exit``, as an action
whose result reaches it like any other, and says when it is done (its
``Stopped`` action); a claim on the witness is given back once the
addresses are gone. Bounded by :func:`~failoverd.runtime.lifecycle.stop_bound`.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from failoverd.cli import logsetup
from failoverd.cli.config import BackupConfig
from failoverd.cli.exitcodes import EX_CONFIG, EX_OK, ProgramError
from failoverd.core.actions import Announce
from failoverd.core.detector import Detector
from failoverd.core.health import Verdict
from failoverd.runtime import control, lifecycle
from failoverd.runtime.conflicts import conflict_feed
from failoverd.runtime.epoch import next_epoch
from failoverd.runtime.health import HealthMonitor
from failoverd.runtime.lifecycle import load_key
from failoverd.runtime.ports import System
from failoverd.runtime.shell import CoreShell
from failoverd.runtime.udp import HeartbeatSocket
from failoverd.system.mail import Notifier
from failoverd.system.sdnotify import ServiceManager
from failoverd.system.takeover import Takeover

if TYPE_CHECKING:
    from failoverd.analysis.tracewriter import TraceWriter

log = logging.getLogger(__name__)

EXIT_STILL_HOLDING = 1
"""Exit status when the stop could not release every held address."""


def host_system(config: BackupConfig) -> Takeover:
    """The real :class:`~failoverd.runtime.ports.System`: this host's addresses, hooks and ARP."""
    t = config.timing
    return Takeover.build(
        hook_dir=config.hook_dir,
        hook_timeout=config.hook_timeout,
        probe_count=t.probe_count if config.arp_probe else 0,
        probe_spacing=t.effective_probe_spacing,
        garp_count=t.garp_count,
        garp_spacing=t.garp_spacing,
    )


async def serve(
    config: BackupConfig,
    *,
    system: System | None = None,
    task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run the backup until SIGTERM/SIGINT (or cancellation); return the exit status.

    ``system`` replaces the host's addresses/ARP/hooks (default: this host's).
    ``task_status.started()`` gets the control socket path, the heartbeat port
    and the metrics port (None without ``--metrics-listen``) once heartbeats
    are being received.

    Resource handling: every task, socket, hook, check and mail process started here
    has ended when this returns.

    Error handling: an unusable key file raises :class:`ProgramError` (78)
    before anything starts, and a metrics address that cannot be listened on
    before any task starts; a heartbeat port that cannot be bound raises ``OSError``;
    an unexpected exception in any task stops the daemon and propagates.
    """
    key = load_key(config)
    host = system if system is not None else host_system(config)
    master = str(config.master)

    held = await _adopt(host, config)
    monitor: HealthMonitor | None = None
    first: Verdict | None = None
    if config.checks.commands:
        monitor = HealthMonitor(config.checks, "backup", lambda verdict: shell.health(verdict.healthy, verdict.reason))
        first = await monitor.first_round()
    start, epoch = trio.current_time(), next_epoch(config.state_dir)
    claims = lifecycle.witness_claims(config.witness, config.triplets, "failoverd")
    recorder = _open_trace(config, start=start, epoch=epoch, held=held)
    # The trace is closed (idempotently) on every way out, errors included.
    with (
        recorder if recorder is not None else nullcontext(),
        HeartbeatSocket.bind(config.port, ipv6=config.ipv6) as sock,
        lifecycle.metrics_endpoint(config.metrics_listen) as scrape,
    ):
        core = Detector(config.detector_settings(), start, key=key, epoch=epoch, held=held)
        log.info(
            "watching master %s on port %d (%s heartbeats); takes over %s",
            master, sock.port, "authenticated" if key else "legacy",
            ", ".join(str(t) for t in config.triplets),
        )
        conflicts = conflict_feed(
            host, lambda addresses: shell.conflict(addresses),
            claimed=lambda: core.addresses if core.holds_any else frozenset(),
        )
        service = ServiceManager()
        logsetup.report_state(lambda: core.state)
        meter = lifecycle.metrics_meter("backup", core, host) if scrape is not None else None
        transitions = lifecycle.RecentTransitions()

        shell = CoreShell(
            core, system=host, transport=sock, notifier=Notifier(command=config.notify_command),
            recorder=recorder,
            on_action=lifecycle.following(
                conflicts.follow if conflicts is not None else None,
                lifecycle.systemd_status(service, lambda: shell.snapshot()), transitions.follow,
                meter.follow if meter else None,
            ),
            on_result=meter.result if meter else None,
            claims=claims,
            follow_frames=False,  # none of these looks at a frame (one call chain less per frame)
        )
        links = host.link_watcher(core.link_interfaces, lambda interface, up: shell.link(interface, up))
        stopping = trio.Event()

        def status() -> dict[str, Any]:
            return lifecycle.status_reply(
                shell.snapshot(), master=master, timing=control.timing_dict(config.timing), transitions=transitions,
            )

        def dump() -> dict[str, Any]:
            with shell.lock:  # the frame thread counts into the socket's tallies
                state = shell.snapshot()
                state["runtime"] = _runtime_state(shell, sock)
            if monitor is not None:
                state["runtime"]["checks"] = monitor.snapshot()
            return state

        def reload() -> None:
            nonlocal key
            service.reloading()
            key = lifecycle.reload_key(config.key_file, key, shell.rekey)
            log.info("SIGHUP: hooks in %s are read afresh at every use", config.hook_dir)
            service.reloaded()

        async with trio.open_nursery() as nursery:
            if claims is not None:
                await nursery.start(claims.run)  # its client, open until the stop has given the claim back
            await nursery.start(shell.executor.run)
            if first is not None and not first.healthy:
                shell.health(False, first.reason)  # the detector starts healthy
            # The signal watcher outlives the inputs, so a second SIGTERM
            # during the stop is only logged, not the default action.
            await nursery.start(
                partial(
                    lifecycle.watch_signals, stop=lifecycle.stopper(stopping), reload=reload,
                    dump=lambda: lifecycle.log_state(dump()),
                )
            )
            inputs = trio.CancelScope()

            async def run_inputs(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                with inputs:
                    async with trio.open_nursery() as inner:
                        if links is not None:
                            await inner.start(links.run)  # the links at start, before any deadline
                        await inner.start(
                            control.serve_control, config.control_socket,
                            control.command_handler(status=status, dump=dump),
                        )
                        # The heartbeats and the timer, in a thread of their own (runtime/shell.py).
                        await inner.start(shell.run_frames, sock)
                        if conflicts is not None:
                            await inner.start(conflicts.run)
                        if scrape is not None and meter is not None:
                            await inner.start(scrape.serve, meter.collector(shell, sock))
                        if monitor is not None:
                            await inner.start(monitor.run)
                        task_status.started()

            await nursery.start(run_inputs)
            # Under the lock: the frame thread may already have let some of them go.
            with shell.lock:
                adopted = held & core.held
                if adopted and core.state == "failed_over":
                    shell.submit([Announce(adopted)])
            await nursery.start(service.run_watchdog)
            service.ready(lifecycle.status_line(shell.snapshot()))
            task_status.started({
                "control_socket": config.control_socket, "port": sock.port,
                "metrics_port": scrape.port if scrape is not None else None,
            })
            await stopping.wait()
            service.stopping()
            inputs.cancel()
            # Before the stop drops queued changes: a takeover the frame thread
            # decided a moment ago is queued, not yet the executor's, and no
            # input may reach the core once the stop has begun.
            shell.halt_frames()
            status_code = await _stop(config, core, shell)
            if recorder is not None:
                # Joins the writer thread after its last flush: off the loop.
                await trio.to_thread.run_sync(recorder.close, trio.current_time())
            nursery.cancel_scope.cancel()
        service.close()
        logsetup.report_state(None)
    return status_code


async def _adopt(host: System, config: BackupConfig) -> frozenset:
    held = await host.present(config.triplets)
    if held:
        log.warning(
            "already on our interfaces at start: %s; adopting them as held (the master's first heartbeat releases them)",
            ", ".join(sorted(map(str, held))),
        )
    return held



async def _stop(config: BackupConfig, core: Detector, shell: CoreShell) -> int:
    executor = shell.executor
    dropped = executor.stop_accepting_changes()
    for action in dropped:
        log.info("stopping: dropped queued %s", type(action).__name__.lower())
    with trio.move_on_after(lifecycle.stop_bound(config.hook_timeout)) as bound:
        await executor.finish_current()
        # The detector decides what the stop releases, from what it now
        # knows exactly it holds; it says (alarms) what it does and when it is done.
        executor.accept_changes()
        shell.stop(release=not config.keep_addresses_on_exit)
        await executor.stopped.wait()
        await executor.finish_current()  # the release's PostRel hooks
        await executor.finish_claims()  # the claim given back to the witness
        if core.held and not config.keep_addresses_on_exit:
            return EXIT_STILL_HOLDING
        return EX_OK
    assert bound.cancelled_caught
    log.error(
        "stop took longer than %g s; exiting with %s possibly still configured",
        lifecycle.stop_bound(config.hook_timeout), ", ".join(sorted(map(str, core.held | core.addresses))),
    )
    return EXIT_STILL_HOLDING


def _runtime_state(shell: CoreShell, sock: HeartbeatSocket) -> dict[str, Any]:
    executor = shell.executor
    current = executor.current
    return {
        "address_change_in_progress": None if current is None else type(current).__name__,
        "address_changes_queued": max(0, executor.pending_changes - (current is not None)),
        "probes_running": executor.probes_running,
        "timer_firings": shell.timer_firings,
        "datagrams_sent": sock.sent,
        "datagrams_dropped": sock.dropped,
    }


def _open_trace(
    config: BackupConfig, *, start: float, epoch: int, held: frozenset
) -> TraceWriter | None:
    """The trace writer for ``--trace`` (it records without ever blocking the detector), or None."""
    if config.trace_file is None:
        return None
    # Imported only for --trace: the trace module (and its JSON and file
    # handling) is 1.6 MiB of a daemon's memory that records nothing otherwise.
    from failoverd.analysis import trace
    from failoverd.analysis.tracewriter import TraceWriter

    header = trace.header_for_backup(config, start=start, epoch=epoch, held=held)
    try:
        writer = TraceWriter(config.trace_file, header, max_bytes=config.trace_max_bytes)
    except (OSError, ValueError) as error:
        raise ProgramError(EX_CONFIG, f"cannot record a trace to {config.trace_file}: {error}") from None
    log.info("recording a trace to %s", config.trace_file)
    return writer


def run(config: BackupConfig) -> int:
    """The program's entry point: run the backup daemon; the return value is the exit status."""
    return lifecycle.run_daemon(serve, config)

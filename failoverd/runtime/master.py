"""heartbeatd's runtime: the master's core, live.

One nursery holds the executor, the timer (which sends the heartbeats), the
receiver for the backup's status frames, the ARP conflict watcher (see
:mod:`failoverd.runtime.conflicts`: another host announcing an address we
hold makes us announce it again), the health checks (see
:mod:`failoverd.runtime.health`: their first round runs before the core is
built, and an unhealthy verdict reaches it before its first heartbeat, which
then says ``leaving``), the link watch (the links of the managed addresses'
interfaces, read before the first heartbeat too: a master whose link is
down steps down; see :mod:`failoverd.system.linkwatch`), the control socket
and the signal watcher. Without ``--manage`` no link is watched: the master
holds nothing through us, so there is nothing to release (logged at start).

With ``--etcd-endpoints`` the executor also carries out the core's claims on
the etcd witness (:mod:`failoverd.runtime.claims`, whose client runs in the
nursery too), each request in a task of its own and bounded, so a hung etcd
never delays a heartbeat; managed addresses found on our interfaces at start
are released unless a claim proves them ours (the core does that).

Start-up: managed addresses already on our interfaces are adopted (never
added twice); if all of them are, the master starts holding and tickles them
(gratuitous ARP), as the original heartbeatd tickles its interfaces at
start-up. SIGHUP tickles again. Without ``--manage`` heartbeatd does not know
which addresses are its own, so there is nothing to tickle; that is logged.

Stop (SIGTERM/SIGINT): the stop is fed to the core (``Master.shutdown``) and
its actions run until the core says it is complete (its ``Stopped`` action,
on reaching ``stopped``): a managing master releases its addresses first and
then sends a ``leaving`` heartbeat, so the backup takes over at once instead
of after its timeout; the witness's claim is given back once the addresses
are gone. Bounded by :func:`~failoverd.runtime.lifecycle.stop_bound`.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import trio

from failoverd.cli import logsetup
from failoverd.cli.config import MasterConfig
from failoverd.cli.exitcodes import EX_OK
from failoverd.core.actions import Announce
from failoverd.core.health import Verdict
from failoverd.core.master import Master
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

log = logging.getLogger(__name__)

EXIT_STILL_HOLDING = 1


def host_system(config: MasterConfig) -> Takeover:
    """The real :class:`~failoverd.runtime.ports.System`: this host's addresses, hooks and ARP."""
    return Takeover.build(
        hook_dir=config.hook_dir,
        hook_timeout=config.hook_timeout,
        probe_count=config.probe_count if config.arp_probe else 0,
        probe_spacing=config.effective_probe_spacing,
        garp_count=config.garp_count,
        garp_spacing=config.garp_spacing,
    )


def _timing(config: MasterConfig) -> dict[str, Any]:
    return {
        "interval": config.interval,
        "backup_fail_after": config.backup_fail_after,
        "probe_count": config.probe_count,
        "probe_spacing": config.effective_probe_spacing,
        "garp_count": config.garp_count,
        "garp_spacing": config.garp_spacing,
        "garp_refresh": config.garp_refresh,
    }


async def serve(
    config: MasterConfig,
    *,
    system: System | None = None,
    task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run heartbeatd until SIGTERM/SIGINT (or cancellation); return the exit status.

    Resource handling and error handling as :func:`failoverd.runtime.backup.serve`.
    """
    key = load_key(config)
    host = system if system is not None else host_system(config)
    held: frozenset = frozenset()
    if config.managed:
        held = await host.present(config.managed)
        if held:
            log.warning("already on our interfaces at start: %s; adopting them", ", ".join(sorted(map(str, held))))
    monitor: HealthMonitor | None = None
    first: Verdict | None = None
    if config.checks.commands:
        monitor = HealthMonitor(config.checks, "master", lambda verdict: shell.health(verdict.healthy, verdict.reason))
        first = await monitor.first_round()
    ipv6 = any(target.version == 6 for target in config.targets)
    claims = lifecycle.witness_claims(config.witness, config.managed, "heartbeatd")
    with HeartbeatSocket.bind(config.port, ipv6=ipv6) as sock, lifecycle.metrics_endpoint(config.metrics_listen) as scrape:
        core = Master(config.master_settings(), trio.current_time(), key=key, epoch=next_epoch(config.state_dir), held=held)
        log.info(
            "sending %s heartbeats to %s on port %d every %g s; %s",
            "authenticated" if key else "legacy", " ".join(core.targets), sock.port, config.interval,
            "managing " + ", ".join(map(str, config.managed)) if config.managed else "managing no addresses",
        )
        conflicts = conflict_feed(
            host, lambda addresses: shell.conflict(addresses),
            claimed=lambda: core.managed if core.claims else frozenset(),
        )
        service = ServiceManager()
        logsetup.report_state(lambda: core.state)
        meter = lifecycle.metrics_meter("master", core, host) if scrape is not None else None
        transitions = lifecycle.RecentTransitions()

        shell = CoreShell(
            core, system=host, transport=sock, notifier=Notifier(command=config.notify_command),
            on_action=lifecycle.following(
                conflicts.follow if conflicts is not None else None,
                lifecycle.systemd_status(service, lambda: shell.snapshot()), transitions.follow,
                meter.follow if meter else None,
            ),
            on_result=meter.result if meter else None,
            claims=claims,
            follow_frames=False,  # none of these looks at a frame (one call chain less per frame)
            adds_early=True,  # the failback's add where the status is counted (runtime/shell.py)
        )
        links = (
            host.link_watcher(core.link_interfaces, lambda interface, up: shell.link(interface, up))
            if config.managed else None
        )
        if not config.managed:
            log.info("no --manage addresses: heartbeatd holds none through us, so no link is watched "
                     "(a lost link does not make it step down)")
        stopping = trio.Event()

        def tickle(why: str) -> None:
            with shell.lock:  # the frame thread changes the state; what is announced is what is held then
                held, state = core.held, core.state
                if held and state == "holding":
                    shell.submit([Announce(held)])
            if held and state == "holding":
                log.info("%s: tickling %s", why, ", ".join(sorted(map(str, held))))
            elif held:
                # Stepping down (a check failed or a link is down): announcing what we let go would contradict it.
                log.info("%s: %s, not holding: nothing to tickle", why, state)
            elif config.managed:
                log.info("%s: holding none of our addresses yet; nothing to tickle", why)
            else:
                log.info("%s: no --manage addresses, so nothing to tickle", why)

        def status() -> dict[str, Any]:
            return lifecycle.status_reply(
                shell.snapshot(), master=None, timing=_timing(config), transitions=transitions,
            )

        def dump() -> dict[str, Any]:
            with shell.lock:  # one moment of the core and its counters (the frame thread changes both)
                state = shell.snapshot()
                state["runtime"] = {
                    "timer_firings": shell.timer_firings,
                    "datagrams_sent": sock.sent,
                    "datagrams_dropped": sock.dropped,
                    "probes_running": shell.executor.probes_running,
                }
            if monitor is not None:
                state["runtime"]["checks"] = monitor.snapshot()
            return state

        def reload() -> None:
            nonlocal key
            service.reloading()
            key = lifecycle.reload_key(config.key_file, key, shell.rekey)
            tickle("SIGHUP")
            service.reloaded()

        async with trio.open_nursery() as nursery:
            if claims is not None:
                await nursery.start(claims.run)  # its client, open until the stop has given the claim back
            await nursery.start(shell.executor.run)
            if first is not None and not first.healthy:
                shell.health(False, first.reason)  # the core starts healthy; before its first heartbeat
            if links is not None:
                await nursery.start(links.run)  # the links at start reach the core before its first heartbeat
            await nursery.start(
                partial(
                    lifecycle.watch_signals, stop=lifecycle.stopper(stopping), reload=reload,
                    dump=lambda: lifecycle.log_state(dump()),
                )
            )
            await nursery.start(
                control.serve_control, config.control_socket, control.command_handler(status=status, dump=dump)
            )
            # The heartbeats, the backup's frames and the timer, in a thread of their own (runtime/shell.py).
            await nursery.start(shell.run_frames, sock)
            if conflicts is not None:
                await nursery.start(conflicts.run)
            if scrape is not None and meter is not None:
                await nursery.start(scrape.serve, meter.collector(shell, sock))
            if monitor is not None:
                await nursery.start(monitor.run)
            tickle("start-up")
            await nursery.start(service.run_watchdog)
            service.ready(lifecycle.status_line(shell.snapshot()))
            task_status.started({
                "control_socket": config.control_socket, "port": sock.port,
                "metrics_port": scrape.port if scrape is not None else None,
            })
            await stopping.wait()
            service.stopping()
            status_code = await _stop(config, core, shell)
            nursery.cancel_scope.cancel()
        service.close()
        logsetup.report_state(None)
    return status_code



async def _stop(config: MasterConfig, core: Master, shell: CoreShell) -> int:
    shell.stop()
    bound = lifecycle.stop_bound(config.hook_timeout)
    with trio.move_on_after(bound):
        # The core drives the stop through its own actions (release, then the
        # leaving heartbeat); we only wait for it to say it is done, then for
        # the release's PostRel hooks.
        await shell.executor.stopped.wait()
        await shell.executor.finish_current()
        await shell.executor.finish_claims()  # the claim given back to the witness
        if core.held:
            log.error("stopped still holding %s", ", ".join(sorted(map(str, core.held))))
            return EXIT_STILL_HOLDING
        return EX_OK
    log.error("stop took longer than %g s (state %s, holding %s)", bound, core.state,
              ", ".join(sorted(map(str, core.held))) or "nothing")
    return EXIT_STILL_HOLDING


def run(config: MasterConfig) -> int:
    """The program's entry point: run heartbeatd; the return value is the exit status."""
    return lifecycle.run_daemon(serve, config)

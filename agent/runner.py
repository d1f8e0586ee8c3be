"""The agent itself: collect, report, act, and the loop that repeats it.

One cycle: run the host collectors (each isolated), list the desktops, probe the
running ones, build the report with the next seq (reserved on disk before it is
sent), send it, execute the actions in the answer (their results go with the
next report, sent at once) and wait the interval the broker asked for. While
the broker is away the loop keeps collecting and tries again after the wait
the broker asked for (Retry-After), or else with exponential backoff never
beyond three intervals, so a host is not counted down long after the broker is
back (agent.backoff). Counters are cumulative and action results stay in the
state until delivered, so an outage loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from agent import __version__, systemd
from agent.actions import execute
from agent.backoff import DEFAULT_CAP_S, delay_after_failure
from agent.collectors.base import (
    Collector,
    Fields,
    Outcome,
    collector_changes,
    isolated,
    merge,
    run_isolated,
)
from agent.collectors.cpu import CpuCollector
from agent.collectors.disk import DiskCollector
from agent.collectors.load import LoadCollector
from agent.collectors.memory import MemoryCollector
from agent.collectors.network import NetworkCollector
from agent.collectors.pressure import PressureCollector
from agent.collectors.probes import (
    ProbeError,
    ProbeOutcome,
    endpoint,
    failure_changes,
    log_failure_changes,
    log_timeout_changes,
    probe_all,
    probe_stats,
    tally,
    timeout_changes,
)
from agent.config import AgentConfig
from agent.http import local_address_towards
from agent.hypervisors.base import ConsoleProtocol, Desktop, Hypervisor
from agent.protocol_base import HYPERVISOR_COLLECTOR, MAX_ACTIONS, PowerState
from agent.reporter import Delivery, Reporter, Verdict, read_token
from agent.state import (
    AgentState,
    StateStore,
    acknowledge,
    raise_seq,
    release_unused_seqs,
    take_seq,
)
from agent.telemetry import CollectorHealth, Telemetry
from agent.wire import ReportHeader, build_report, desktop_entry, encode_report, valid_name

log = logging.getLogger(__name__)

# While reports keep failing the same way, the journal gets a line at most this
# often (the attempt count in it says how many went by).
FAILURE_LOG_EVERY_S = 60.0

# How often the probe counters are written at the most (see agent.state): every
# report at the usual intervals, every few seconds when reports come fast.
SAVE_EVERY_S = 10.0


def host_collectors(proc: Path = Path("/proc")) -> list[Collector]:
    return [
        CpuCollector(),
        LoadCollector(),
        MemoryCollector(),
        DiskCollector(),
        NetworkCollector(),
        PressureCollector(proc),
    ]


async def open_hypervisor(config: AgentConfig) -> Hypervisor:
    """The configured hypervisor, ready to list desktops. Each kind is imported only
    when chosen."""
    if config.hypervisor == "simulated":
        from agent.hypervisors.simulated import SimulatedHypervisor

        simulated = SimulatedHypervisor(
            config.simulated_desktops,
            ConsoleProtocol(config.simulated_protocol),
            latency_s=config.simulated_latency,
            hang=config.simulated_hang,
            boot_delay_s=config.simulated_boot_delay,
        )
        return await simulated.start()
    if config.hypervisor == "static":
        from agent.hypervisors.static import StaticHypervisor

        assert config.static_desktops is not None  # checked by load_config
        return StaticHypervisor.from_file(config.static_desktops)
    from agent.hypervisors.libvirt import LibvirtHypervisor

    address = await console_address(config)
    return await LibvirtHypervisor.open(config.libvirt_uri, console_address=address)


async def console_address(config: AgentConfig) -> str:
    """Where the gateway reaches consoles that listen on all interfaces: as
    configured, else the address this host reaches the broker from (the broker's
    gateway sits on the same side), else loopback, with a warning."""
    if config.console_address:
        return config.console_address
    if not config.broker:
        return "127.0.0.1"  # `vdi-agent once` without a broker: nothing to go by
    found = await asyncio.to_thread(local_address_towards, config.broker)
    if found is None:
        log.warning(
            "no route to the broker found: consoles listening on all interfaces are "
            "reported at 127.0.0.1 (set --console-address)"
        )
        return "127.0.0.1"
    return found


def _seconds(value: float) -> str:
    return f"{value:.3g} s"


class MetricsUnavailable(Exception):
    """The metrics port cannot be opened; the message names it."""


@dataclasses.dataclass(frozen=True)
class Cycle:
    seq: int  # of the report sent
    delivery: Delivery
    executed: int  # actions run on the broker's answer


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        hypervisor: Hypervisor,
        state: AgentState,
        store: StateStore | None = None,
        reporter: Reporter | None = None,
        collectors: Sequence[Collector] | None = None,
        backoff_cap_s: float = DEFAULT_CAP_S,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        """Without a store the state is not persisted (vdi-agent once); without a
        reporter the agent can only collect."""
        self.config = config
        self.hypervisor = hypervisor
        self.state = state
        self.store = store
        self.reporter = reporter
        self.collectors = list(collectors) if collectors is not None else host_collectors()
        self.interval_s = config.interval
        # Results a run before this one left undelivered count from the start.
        self.telemetry = Telemetry(backlog=len(state.unacknowledged))
        self._backoff_cap_s = backoff_cap_s
        self._uniform = uniform
        self._known_desktops: list[Desktop] = []
        self._saved_at = time.monotonic()
        self._warned_names: set[str] = set()
        self._timing_out: frozenset[str] = frozenset()  # desktops whose probes time out
        self._failing: Mapping[str, ProbeError] = {}  # consoles failing otherwise
        self._collectors_failing: Mapping[str, str] = {}  # collector name -> error
        self._save_problem: str | None = None  # why the last state write failed
        # The last report failure logged, and when (monotonic): see _log_failure.
        self._failure_said: tuple[tuple[Verdict, int | None, str], float] | None = None

    # -- collecting ---------------------------------------------------------------

    async def _list_desktops(self) -> tuple[Outcome, list[Desktop]]:
        listing: list[Desktop] | None = None
        with isolated(HYPERVISOR_COLLECTOR) as run:
            listing = await self.hypervisor.desktops()
        if listing is None:
            # Report what was there with an unknown state rather than no desktops,
            # which the broker would take for all of them vanishing.
            listing = [
                dataclasses.replace(d, power_state=PowerState.UNKNOWN, connections=None)
                for d in self._known_desktops
            ]
        else:
            self._known_desktops = listing
        return run.outcome(), [d for d in listing if self._reportable(d)]

    def _reportable(self, desktop: Desktop) -> bool:
        if valid_name(desktop.name):
            return True
        if desktop.name not in self._warned_names:
            self._warned_names.add(desktop.name)
            log.warning("desktop %r is left out of reports: its name is not valid", desktop.name)
        return False

    async def collect(self) -> tuple[Fields, list[Fields]]:
        """The report's metrics and desktops; probe counters move on in the state."""
        outcomes = [run_isolated(c) for c in self.collectors]
        listed, desktops = await self._list_desktops()
        probes: dict[str, ProbeOutcome] = {}
        with isolated("probes") as run:
            probes.update(await probe_all(desktops, self.config.probe_timeout))
        totals, latency_mean = tally(self.state.probes, probes.values())
        self.state.probes = totals
        changes = timeout_changes(self._timing_out, (d.name for d in desktops), probes)
        self._timing_out = changes.timing_out
        log_timeout_changes(changes, self.config.probe_timeout)
        failures = failure_changes(self._failing, (d.name for d in desktops), probes)
        self._failing = failures.failing
        log_failure_changes(
            failures,
            {d.name: endpoint(d.address, d.port) for d in desktops if d.address and d.port},
        )
        outcomes += [listed, run.outcome()]
        self._log_collector_changes(outcomes)
        metrics = merge(outcomes)
        metrics["probes"] = probe_stats(totals, latency_mean)
        if self.config.capacity is not None:
            metrics["session_capacity"] = self.config.capacity
        self.telemetry = dataclasses.replace(
            self.telemetry,
            collectors=tuple(CollectorHealth(o.name, o.success, o.duration_s) for o in outcomes),
            desktops=dict(Counter(d.power_state.value for d in desktops)),
        )
        entries = [desktop_entry(d, self.config.pool, probes.get(d.name)) for d in desktops]
        return metrics, entries

    def _log_collector_changes(self, outcomes: Sequence[Outcome]) -> None:
        """A collector that fails (libvirt gone, /proc unreadable) shows in the
        report and in vdi_agent_collector_success; the journal says so too, once
        when it starts and once when it works again."""
        changes = collector_changes(self._collectors_failing, outcomes)
        self._collectors_failing = changes.failing
        for name, error in changes.started:
            log.warning("collector %s failed: %s", name, error)
        for name in changes.ended:
            log.info("collector %s works again", name)

    def save(self, durable: bool = True) -> None:
        """Write the state. While running, a write that fails (a full or broken
        disk) is logged, and reporting goes on: an agent that stopped would make
        its host count as down, and its sessions end. Until a write works again,
        a restart could reuse report numbers (the broker's seq hint recovers) and
        run an unacknowledged action twice (actions are idempotent)."""
        if self.store is None:
            return
        try:
            self.store.save(self.state, durable)
        except OSError as exc:
            problem = f"{exc.strerror or exc}"
            if problem != self._save_problem:
                log.error(
                    "cannot save the agent's state in %s: %s; reporting goes on",
                    self.store.directory,
                    problem,
                )
            self._save_problem = problem
            return
        if self._save_problem is not None:
            log.info("the agent's state is saved again in %s", self.store.directory)
            self._save_problem = None
        self._saved_at = time.monotonic()

    def build_report(self, metrics: Fields, desktops: list[Fields]) -> Fields:
        """The report with the next seq; a newly reserved block of numbers is on disk
        before the report leaves (see agent.state)."""
        seq, reserved = take_seq(self.state)
        if reserved or time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save(durable=reserved)
        header = ReportHeader(
            host=self.config.host_name,
            agent_version=__version__,
            seq=seq,
            created_at=dt.datetime.now(dt.UTC),
            interval_s=self.interval_s,
        )
        results = [r.as_report() for r in list(self.state.unacknowledged.values())[:MAX_ACTIONS]]
        return build_report(header, metrics, desktops, results)

    async def snapshot(self, warm_up_s: float = 0.5) -> Fields:
        """One report without sending it: the collectors run twice, so the CPU
        utilisation (a difference of two readings) has a value."""
        for collector in self.collectors:
            run_isolated(collector)
        await asyncio.sleep(warm_up_s)
        return self.build_report(*await self.collect())

    # -- reporting -----------------------------------------------------------------

    async def _send(self, body: bytes, stop: asyncio.Event | None) -> Delivery:
        """Send a report; a stop meanwhile abandons it (the broker may be hanging
        for the whole report timeout). Safe: nothing has been acted on yet, and
        the broker sends again whatever actions the lost answer carried."""
        assert self.reporter is not None
        if stop is None:
            return await self.reporter.send(body)
        sending = asyncio.ensure_future(self.reporter.send(body))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((sending, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not sending.done():
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending
        if sending.cancelled():
            return Delivery(Verdict.UNAVAILABLE, "stopped before the broker answered")
        return sending.result()

    async def cycle(self, stop: asyncio.Event | None = None) -> Cycle:
        """Collect, report and act once; `stop` ends a report still waiting for
        the broker's answer."""
        assert self.reporter is not None
        report = self.build_report(*await self.collect())
        sent_results = [r["id"] for r in report["action_results"]]
        delivery = await self._send(encode_report(report), stop)
        executed = 0
        if delivery.verdict is Verdict.DELIVERED:
            assert delivery.response is not None
            acknowledge(self.state, sent_results)
            self.interval_s = delivery.response.interval_s
            executed = await execute(self.hypervisor, self.state, delivery.response.actions)
            if executed:
                self.save()  # before anything else: never run one twice
            self.telemetry = dataclasses.replace(
                self.telemetry,
                reports_sent=self.telemetry.reports_sent + 1,
                last_success_timestamp=time.time(),
            )
        else:
            if delivery.verdict is Verdict.SEQ_CONFLICT:
                # Continue above what the broker has; without its hint, above any seq
                # an earlier installation could have used (milliseconds since 1970).
                raise_seq(self.state, delivery.seq_hint or int(time.time() * 1000))
            self.telemetry = dataclasses.replace(
                self.telemetry, reports_failed=self.telemetry.reports_failed + 1
            )
        self.telemetry = dataclasses.replace(self.telemetry, backlog=len(self.state.unacknowledged))
        return Cycle(report["seq"], delivery, executed)

    def _log_failure(self, delivery: Delivery, seq: int, delay: float, attempt: int) -> None:
        """Say why a report failed: at once for a new kind of failure, then at most
        every FAILURE_LOG_EVERY_S while it stays the same, so a long broker outage
        is a few lines in the journal rather than one every attempt."""
        assert self.reporter is not None
        key = (delivery.verdict, delivery.status, delivery.reason)
        now = time.monotonic()
        said = self._failure_said
        if said is not None and said[0] == key and now - said[1] < FAILURE_LOG_EVERY_S:
            return
        self._failure_said = (key, now)
        url = self.reporter.url
        retry = f"retrying in {_seconds(delay)} (attempt {attempt})"
        if delivery.status is None and delivery.verdict is Verdict.REJECTED:
            log.error("report %d not sent: %s; %s", seq, delivery.reason, retry)
        elif delivery.status is None:
            log.warning("broker unreachable at %s (%s), %s", url, delivery.reason, retry)
        elif delivery.verdict is Verdict.SEQ_CONFLICT:
            log.warning(
                "broker at %s refused report %d: %s; continuing from seq %d, %s",
                url, seq, delivery.reason, self.state.seq + 1, retry,
            )  # fmt: skip
        elif delivery.verdict is Verdict.REJECTED:
            log.error("broker at %s refused report %d: %s; %s", url, seq, delivery.reason, retry)
        else:
            log.warning("broker at %s %s, %s", url, delivery.reason, retry)

    async def run(self, stop: asyncio.Event) -> None:
        """Report until `stop` is set."""
        failures = 0
        delivered_any = False
        while not stop.is_set():
            started = time.monotonic()
            wake: Callable[[], bool] | None = None
            done = await self.cycle(stop)
            delivery, executed, seq = done.delivery, done.executed, done.seq
            if stop.is_set() and delivery.verdict is not Verdict.DELIVERED:
                log.info("stopping: report %d was not delivered", seq)
                return
            if delivery.verdict is Verdict.DELIVERED:
                actions = len(delivery.response.actions) if delivery.response else 0
                level = (
                    logging.INFO if (executed or failures or not delivered_any) else logging.DEBUG
                )
                if failures:
                    log.info("broker reachable again after %d failed attempts", failures)
                self._failure_said = None
                log.log(level, "report %d delivered, %d actions", seq, actions)
                failures = 0
                delivered_any = True
                # Results of executed actions go out at once; otherwise keep the rhythm.
                delay = 0.0 if executed else self.interval_s - (time.monotonic() - started)
            else:
                failures += 1
                delay = delay_after_failure(
                    failures,
                    self.interval_s,
                    self._backoff_cap_s,
                    delivery.retry_after_s,
                    self._uniform,
                )
                if delivery.verdict is Verdict.REJECTED:
                    delay = max(delay, min(self._backoff_cap_s, self.interval_s * 10))
                    if delivery.status in (None, 401, 403) and self.reporter is not None:
                        # The token (or its file) was the trouble: a new one
                        # installed meanwhile is tried at once, not after the wait,
                        # during which the broker counts this host down.
                        wake = self.reporter.token_replaced()
                self._log_failure(delivery, seq, delay, failures)
            if delay > 0:
                await self._pause(stop, delay, wake)

    async def _pause(
        self, stop: asyncio.Event, delay: float, wake: Callable[[], bool] | None
    ) -> None:
        """Wait `delay` seconds or until `stop`; with `wake`, look every interval
        (at most every second) whether to end the wait early."""
        deadline = time.monotonic() + delay
        step = delay if wake is None else min(self.interval_s, 1.0)
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(step, left))
            if wake is not None and wake():
                log.info("the token file changed: reporting again now")
                return


async def serve(config: AgentConfig) -> None:
    """`vdi-agent run`: report until SIGTERM or SIGINT, then close cleanly."""
    assert config.broker is not None and config.token_file is not None
    read_token(config.token_file)  # a missing token should stop the start, loudly
    reporter = Reporter(config.broker, config.token_file)
    store = StateStore(config.state_dir)
    store.lock()
    try:
        await _serve(config, reporter, store)
    finally:
        store.unlock()


async def _serve(config: AgentConfig, reporter: Reporter, store: StateStore) -> None:
    state = store.load()
    # Written once before anything else, so that a state directory the agent
    # cannot write stops the start, loudly; later failures are only logged.
    store.save(state)
    hypervisor = await open_hypervisor(config)
    agent = Agent(config, hypervisor, state, store, reporter)
    stop_metrics: Callable[[], None] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if config.metrics_port is not None:
            from agent import metrics

            try:
                served = metrics.serve(
                    config.metrics_address, config.metrics_port, lambda: agent.telemetry
                )
            except OSError as exc:
                # Else only "[Errno 98] Address already in use": of what?
                where = f"{config.metrics_address}:{config.metrics_port}"
                raise MetricsUnavailable(
                    f"cannot serve metrics at {where} (--metrics-port, --metrics-address): "
                    f"{exc.strerror or exc}"
                ) from None
            stop_metrics = served.stop
            log.info("serving metrics at %s", served.url)
        log.info(
            "vdi-agent %s for host %s: %s hypervisor, reporting to %s, state in %s",
            __version__, config.host_name, hypervisor.kind, reporter.url, config.state_dir,
        )  # fmt: skip
        systemd.notify("READY=1")
        await agent.run(stop)
    finally:
        systemd.notify("STOPPING=1")
        if stop_metrics is not None:
            stop_metrics()
        await hypervisor.close()
        release_unused_seqs(agent.state)
        agent.save()
        log.info("vdi-agent stopped; next report will be seq %d", agent.state.seq + 1)


async def snapshot(config: AgentConfig) -> Fields:
    """`vdi-agent once`: one report, built from the stored state without changing it."""
    state = StateStore(config.state_dir).load(set_aside_damaged=False)
    hypervisor = await open_hypervisor(config)
    try:
        return await Agent(config, hypervisor, state).snapshot()
    finally:
        await hypervisor.close()

"""The report loop against a real HTTP server: delivery, token, backoff, actions."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from agent_fake_broker import TOKEN, FakeBroker, eventually

from agent import http
from agent.backoff import DEFAULT_CAP_S
from agent.config import AgentConfig
from agent.hypervisors.base import ConsoleProtocol
from agent.hypervisors.simulated import SimulatedHypervisor
from agent.protocol import ActionKind, PowerState
from agent.reporter import Reporter
from agent.runner import Agent
from agent.state import StateStore


class CountingSimulated(SimulatedHypervisor):
    """The simulated hypervisor, keeping a list of the actions it performed."""

    def __init__(self, count: int, protocol: ConsoleProtocol, hang: int) -> None:
        super().__init__(count, protocol, hang=hang)
        self.performed: list[tuple[ActionKind, str]] = []

    async def perform(self, action: ActionKind, desktop: str) -> PowerState:
        self.performed.append((action, desktop))
        return await super().perform(action, desktop)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
async def sim() -> AsyncIterator[CountingSimulated]:
    hypervisor = await CountingSimulated(2, ConsoleProtocol.RDP, hang=1).start()
    yield hypervisor
    await hypervisor.close()


@pytest.fixture
def new_agent(
    broker: FakeBroker, token_file: Path, sim: CountingSimulated, tmp_path: Path
) -> Callable[..., Agent]:
    """Makes an agent on the simulated desktops, reporting to the fake broker; each
    call is a fresh agent process on the same state directory (a restart)."""

    def make(
        backoff_cap_s: float = 0.4, uniform: Callable[[float, float], float] = random.uniform
    ) -> Agent:
        config = AgentConfig(
            broker=broker.url,
            token_file=token_file,
            hypervisor="simulated",
            pool="Verwaltung",
            interval=0.1,
            probe_timeout=0.2,
            host_name="vhost01",
            state_dir=tmp_path / "state",
        )
        store = StateStore(config.state_dir)
        reporter = Reporter(broker.url, token_file)
        return Agent(
            config, sim, store.load(), store, reporter, backoff_cap_s=backoff_cap_s, uniform=uniform
        )

    return make


@asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[Agent]:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_reports_carry_the_bearer_token_which_is_never_logged(
    broker: FakeBroker,
    new_agent: Callable[[], Agent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(new_agent()) as agent:
        await eventually(lambda: len(broker.reports) >= 3)
    assert set(broker.authorizations) == {f"Bearer {TOKEN}"}
    first = broker.reports[0]
    assert [r.seq for r in broker.reports[:3]] == [1, 2, 3]
    assert first.host == "vhost01" and {d.pool for d in first.desktops} == {"Verwaltung"}
    assert {d.name: d.probe.error if d.probe else None for d in first.desktops} == {
        "sim-001": "timeout",
        "sim-002": None,
    }
    assert "report 1 delivered, 0 actions" in caplog.text
    assert agent.telemetry.reports_sent >= 3 and agent.telemetry.last_success_timestamp > 0
    for record in caplog.records:
        assert TOKEN not in record.getMessage() and TOKEN not in repr(record.args)
    assert TOKEN not in caplog.text


async def test_backoff_while_the_broker_is_away_loses_no_count(
    broker: FakeBroker,
    new_agent: Callable[[], Agent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with running(new_agent()) as agent:
        await eventually(lambda: len(broker.reports) >= 2)
        await broker.stop()
        before = broker.reports[-1]
        await eventually(lambda: agent.telemetry.reports_failed >= 4)
        await broker.start()  # same port
        await eventually(lambda: broker.reports[-1].seq > before.seq)
    after = broker.reports[-1]
    assert f"broker unreachable at {broker.url}/api/v1/agent/report (Connection refused)" in (
        caplog.text
    )
    assert "retrying in" in caplog.text and "(attempt 1)" in caplog.text
    # The same failure again and again is one line (at most one a minute), not one
    # per attempt: a long outage must not bury the journal.
    assert caplog.text.count("broker unreachable at") == 1
    assert "broker reachable again after" in caplog.text
    # One cycle per report number, each probing two desktops (one hangs): the counts
    # gathered while the broker was away are all in the report after the outage.
    assert after.seq >= before.seq + 5
    assert after.metrics.probes.probes_total == 2 * after.seq
    assert after.metrics.probes.timeouts_total == after.seq


async def test_after_a_long_outage_the_agent_reports_within_three_intervals(
    broker: FakeBroker, new_agent: Callable[..., Agent]
) -> None:
    """With the real cap and the longest jitter: the waits stop growing at three
    intervals, so the host is back at the broker soon after the broker is; before,
    they doubled up to five minutes and the broker counted a healthy host down
    (VdiHostNotReporting) long after its own restart."""
    agent = new_agent(backoff_cap_s=DEFAULT_CAP_S, uniform=lambda lo, hi: hi)
    async with running(agent):
        await eventually(lambda: len(broker.reports) >= 1)
        await broker.stop()
        before = broker.reports[-1].seq
        await eventually(lambda: agent.telemetry.reports_failed >= 6)
        await broker.start()  # same port
        back = time.monotonic()
        await eventually(lambda: broker.reports[-1].seq > before)
        waited = time.monotonic() - back
    # Three intervals (0.3 s) plus a cycle's collecting and probing; the doubling
    # waits would have been 3.2 s here.
    assert waited < 1.5, waited


async def test_broker_errors_are_retried_until_it_recovers(
    broker: FakeBroker,
    new_agent: Callable[[], Agent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker.status = 503
    async with running(new_agent()) as agent:
        await eventually(lambda: agent.telemetry.reports_failed >= 2)
        broker.status = 200
        await eventually(lambda: len(broker.reports) >= 1)
    assert f"broker at {broker.url}/api/v1/agent/report answered 503, retrying in" in caplog.text
    assert broker.reports[0].seq >= 3


async def test_the_brokers_retry_after_is_kept_not_a_growing_backoff(
    broker: FakeBroker,
    new_agent: Callable[..., Agent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker answers 503 with Retry-After while its database is away. The
    agent comes back then (plus at most one interval of jitter), neither sooner
    nor after an ever longer backoff: hosts count as down until they report."""
    broker.status, broker.retry_after = 503, "1"
    async with running(new_agent(backoff_cap_s=30.0)) as agent:
        await eventually(lambda: agent.telemetry.reports_failed >= 3)
        broker.status = 200
        await eventually(lambda: len(broker.reports) >= 1)
    gaps = [later - earlier for earlier, later in zip(broker.times, broker.times[1:], strict=False)]
    # interval 0.1 s: each wait is 1 s plus up to 0.1 s, give or take the machine
    assert all(0.95 <= gap <= 1.6 for gap in gaps[:3]), gaps
    # 1 s plus the jitter, printed to three digits: "1 s" when the jitter is tiny
    assert re.search(
        r"answered 503 and asked to wait 1 s, retrying in 1(\.\d+)? s \(attempt 1\)", caplog.text
    ), caplog.text


async def test_refused_token_is_said_clearly_and_not_retried_at_once(
    broker: FakeBroker,
    new_agent: Callable[[], Agent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker.status = 401
    broker.error = {"error": "invalid_token", "message": "unknown host token"}
    async with running(new_agent()) as agent:
        await eventually(lambda: agent.telemetry.reports_failed >= 1)
        await asyncio.sleep(0.3)
        assert agent.telemetry.reports_failed == 1  # waits at least the cap (0.4 s here)
    assert "refused report 1: 401: the broker does not accept the agent's token" in caplog.text
    assert "invalid_token; unknown host token" in caplog.text
    assert TOKEN not in caplog.text


async def test_a_new_token_is_picked_up_after_a_refusal(
    broker: FakeBroker,
    token_file: Path,
    new_agent: Callable[[], Agent],
) -> None:
    broker.token = "the-new-token"
    agent = new_agent()
    async with running(agent):
        await eventually(lambda: agent.telemetry.reports_failed >= 1)
        token_file.write_text("the-new-token\n")
        await eventually(lambda: len(broker.reports) >= 1)
    assert broker.authorizations[0] == f"Bearer {TOKEN}"
    assert broker.authorizations[-1] == "Bearer the-new-token"


def agent_every_half_second(
    broker: FakeBroker, token_file: Path, sim: CountingSimulated, tmp_path: Path
) -> Agent:
    """An agent reporting every 0.5 s with the usual refusal wait of ten intervals
    (5 s): long enough to tell "at once" from "after the wait"."""
    config = AgentConfig(
        broker=broker.url, token_file=token_file, hypervisor="simulated", pool="Verwaltung",
        interval=0.5, probe_timeout=0.2, host_name="vhost01", state_dir=tmp_path / "state",
    )  # fmt: skip
    store = StateStore(config.state_dir)
    return Agent(config, sim, store.load(), store, Reporter(broker.url, token_file))


async def test_a_new_token_is_used_at_once_not_after_the_refusal_wait(
    broker: FakeBroker, token_file: Path, sim: CountingSimulated, tmp_path: Path
) -> None:
    """After a refusal the agent waits ten intervals (here 5 s), and the broker
    counts the host down meanwhile; a token installed during the wait is tried
    within an interval."""
    broker.token = "the-new-token"
    agent = agent_every_half_second(broker, token_file, sim, tmp_path)
    async with running(agent):
        await eventually(lambda: agent.telemetry.reports_failed >= 1)
        token_file.write_text("the-new-token\n")
        installed = time.monotonic()
        await eventually(lambda: len(broker.reports) >= 1, timeout_s=4)
    assert time.monotonic() - installed < 2
    assert broker.authorizations[-1] == "Bearer the-new-token"


async def test_a_token_installed_before_the_refusal_is_used_at_once(
    broker: FakeBroker, token_file: Path, sim: CountingSimulated, tmp_path: Path
) -> None:
    """The usual rotation: `host rotate-token`, the new token goes into the file
    at once, and the agent's next report still carries the token it had read
    before. The file changed before that refusal, not during the wait after it:
    the new token is tried within an interval, not after ten (here 5 s)."""
    broker.interval_s = 0.5
    agent = agent_every_half_second(broker, token_file, sim, tmp_path)
    async with running(agent):
        await eventually(lambda: len(broker.reports) >= 1)
        broker.token = "the-new-token"
        token_file.write_text("the-new-token\n")
        await eventually(lambda: agent.telemetry.reports_failed >= 1)
        refused = time.monotonic()
        await eventually(lambda: broker.authorizations[-1] == "Bearer the-new-token", timeout_s=4)
    assert time.monotonic() - refused < 2


async def test_seq_conflict_moves_above_the_brokers_seq(
    broker: FakeBroker,
    new_agent: Callable[[], Agent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker.status = 409
    broker.error = {"error": "stale_seq", "message": "seq not above 5000", "last_seq": 5000}
    async with running(new_agent()) as agent:
        await eventually(lambda: agent.telemetry.reports_failed >= 1)
        broker.status = 200
        await eventually(lambda: len(broker.reports) >= 1)
    assert broker.reports[0].seq == 5001
    assert "refused report 1: the broker has seen a higher seq" in caplog.text
    assert "continuing from seq 5001" in caplog.text


async def test_without_a_hint_seq_jumps_to_the_clock(
    broker: FakeBroker,
    new_agent: Callable[[], Agent],
) -> None:
    broker.status = 409
    broker.error = {"error": "stale_seq", "message": "seq not above the last"}
    before_ms = int(time.time() * 1000)
    async with running(new_agent()) as agent:
        await eventually(lambda: agent.telemetry.reports_failed >= 1)
        broker.status = 200
        await eventually(lambda: len(broker.reports) >= 1)
    assert before_ms < broker.reports[0].seq <= int(time.time() * 1000) + 1


async def test_actions_run_once_and_their_results_arrive_in_the_next_report(
    broker: FakeBroker,
    sim: CountingSimulated,
    new_agent: Callable[[], Agent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    broker.forget_results = 1  # the first result is "lost": the broker asks again
    broker.pending = [
        {"id": "act-1", "kind": "stop", "desktop": "sim-002"},
        {"id": "act-2", "kind": "start", "desktop": "sim-404"},
    ]
    async with running(new_agent()):
        await eventually(lambda: not broker.pending)
        await eventually(lambda: len(broker.reports) >= 6)
    assert sim.performed == [(ActionKind.STOP, "sim-002"), (ActionKind.START, "sim-404")]
    results = [(r.seq, a.id, a.ok) for r in broker.reports for a in r.action_results]
    first_with_results = results[0][0]
    assert first_with_results == 2  # sent at once after the answer to report 1
    assert ("act-1", True) in [(i, ok) for _, i, ok in results]
    assert ("act-2", False) in [(i, ok) for _, i, ok in results]
    # act-1's result was "lost" once: re-sent from the store, never re-executed
    assert [i for _, i, _ in results].count("act-1") == 2
    by_id = {a.id: a for r in broker.reports for a in r.action_results}
    assert by_id["act-1"].power_state is PowerState.STOPPED
    assert by_id["act-2"].error == "no desktop named 'sim-404'"
    last = {d.name: d for d in broker.reports[-1].desktops}
    assert last["sim-002"].power_state is PowerState.STOPPED and last["sim-002"].probe is None
    assert broker.reports[-1].action_results == []
    assert caplog.text.count("stop sim-002 (action act-1): now stopped") == 1


async def test_undelivered_results_survive_an_outage_and_a_restart(
    broker: FakeBroker,
    sim: CountingSimulated,
    new_agent: Callable[[], Agent],
) -> None:
    broker.pending = [{"id": "act-9", "kind": "reset", "desktop": "sim-002"}]
    broker.status_after_actions = 503  # the broker goes away right after sending it
    async with running(new_agent()) as agent:
        await eventually(lambda: sim.performed)
        await eventually(lambda: agent.telemetry.reports_failed >= 1)
        assert agent.telemetry.backlog == 1
    broker.status = 200
    restarted = new_agent()
    async with running(restarted):
        await eventually(lambda: not broker.pending)
    delivered = [a for r in broker.reports for a in r.action_results]
    assert [a.id for a in delivered] == ["act-9"] and delivered[0].ok
    assert sim.performed == [(ActionKind.RESET, "sim-002")]
    assert restarted.telemetry.backlog == 0


async def test_https_to_a_plain_http_broker_says_what_is_likely_wrong(broker: FakeBroker) -> None:
    """--broker https://... where the broker (no TLS of its own, no proxy in front)
    speaks plain HTTP: 'TLS failed: WRONG_VERSION_NUMBER' alone means nothing to
    an admin; the reverse mistake already had a hint."""
    assert broker.url.startswith("http://")
    with pytest.raises(http.HttpError) as refused:
        await http.post(broker.url.replace("http://", "https://") + "/x", b"{}", {}, 10)
    assert "if the broker speaks plain HTTP there, give its http:// address" in str(refused.value)

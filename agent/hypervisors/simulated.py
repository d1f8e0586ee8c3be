"""Simulated desktops: real TCP listeners on 127.0.0.1, for the demo, tests and
benchmarks.

Each desktop answers like its console would (RFB banner, X.224 Connection
Confirm), then echoes every byte, so tunnels through the broker's gateway can be
checked end to end. Latency and hanging are settable per desktop, so probe
timeouts are real timeouts. Power actions open and close the listener: a stopped
desktop refuses connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from agent.handshake import (
    RFB_BANNER,
    FirstBytes,
    classify_first_bytes,
    connection_confirm,
)
from agent.hypervisors.base import ConsoleProtocol, Desktop, HypervisorError, already_there
from agent.protocol_base import ActionKind, PowerState

ADDRESS = "127.0.0.1"
_CONFIRM = connection_confirm()


def desktop_names(count: int) -> list[str]:
    """sim-001, sim-002, ...; wider numbers once there are more than 999."""
    width = max(3, len(str(count)))
    return [f"sim-{i:0{width}d}" for i in range(1, count + 1)]


@dataclass(eq=False)
class _Desktop:
    name: str
    protocol: ConsoleProtocol
    latency_s: float = 0.0
    hang: bool = False
    power_state: PowerState = PowerState.STOPPED
    port: int | None = None  # kept while off: it comes back on the same one if free
    server: asyncio.Server | None = None
    clients: set[asyncio.Transport] = field(default_factory=set)
    transition: asyncio.Task[None] | None = None


_Step = Callable[[_Desktop], Awaitable[None]]  # powering one desktop on or off


class SimulatedHypervisor:
    kind = "simulated"

    def __init__(
        self,
        count: int,
        protocol: ConsoleProtocol = ConsoleProtocol.RDP,
        latency_s: float = 0.0,
        hang: int = 0,
        boot_delay_s: float = 0.0,
    ) -> None:
        """`hang` makes the first N desktops hang; `boot_delay_s` is how long start,
        stop and reboot stay in the starting/stopping states."""
        self._desktops = {
            name: _Desktop(name, protocol, latency_s, hang=i < hang)
            for i, name in enumerate(desktop_names(count))
        }
        self._boot_delay_s = boot_delay_s

    async def start(self) -> SimulatedHypervisor:
        """Power every desktop on (listeners open); returns self for chaining."""
        for d in self._desktops.values():
            await self._power_on(d)
        return self

    # -- settings ---------------------------------------------------------------

    def _get(self, name: str) -> _Desktop:
        try:
            return self._desktops[name]
        except KeyError:
            raise HypervisorError(f"no desktop named {name!r}") from None

    def set_latency(self, name: str, seconds: float) -> None:
        """Delay before the desktop answers a new connection."""
        self._get(name).latency_s = seconds

    def set_hang(self, name: str, hang: bool = True) -> None:
        """A hanging desktop accepts connections but never answers."""
        self._get(name).hang = hang

    def endpoint(self, name: str) -> tuple[str, int] | None:
        """Where the desktop's console listens; None while it does not."""
        d = self._get(name)
        return None if d.server is None or d.port is None else (ADDRESS, d.port)

    # -- Hypervisor ---------------------------------------------------------------

    async def desktops(self) -> list[Desktop]:
        desktops = []
        for d in self._desktops.values():
            endpoint = self.endpoint(d.name)
            desktops.append(
                Desktop(
                    name=d.name,
                    power_state=d.power_state,
                    address=endpoint[0] if endpoint else None,
                    port=endpoint[1] if endpoint else None,
                    protocol=d.protocol,
                    connections=len(d.clients),
                )
            )
        return desktops

    async def perform(self, action: ActionKind, desktop: str) -> PowerState:
        d = self._get(desktop)
        if already_there(action, d.power_state):
            return d.power_state
        if action in (ActionKind.REBOOT, ActionKind.RESET) and d.power_state not in (
            PowerState.RUNNING,
            PowerState.STARTING,
        ):
            raise HypervisorError(f"desktop {desktop} is not running")
        await self._cancel_transition(d)
        if action is ActionKind.STOP:
            await self._transition(d, PowerState.STOPPING, self._power_off)
        elif action is ActionKind.START:
            await self._transition(d, PowerState.STARTING, self._power_on)
        else:  # a reboot or reset is off and on again, the console drops meanwhile
            await self._power_off(d)
            await self._transition(d, PowerState.STARTING, self._power_on)
        return d.power_state

    async def close(self) -> None:
        for d in self._desktops.values():
            await self._cancel_transition(d)
            await self._power_off(d)

    # -- power ----------------------------------------------------------------------

    async def _transition(self, d: _Desktop, meanwhile: PowerState, finish: _Step) -> None:
        if self._boot_delay_s <= 0:
            await finish(d)
            return
        d.power_state = meanwhile

        async def later() -> None:
            await asyncio.sleep(self._boot_delay_s)
            await finish(d)

        d.transition = asyncio.create_task(later(), name=f"power {d.name}")

    @staticmethod
    async def _cancel_transition(d: _Desktop) -> None:
        if d.transition is not None and not d.transition.done():
            d.transition.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await d.transition
        d.transition = None

    async def _power_on(self, d: _Desktop) -> None:
        if d.server is None:
            d.server = await self._listen(d)
            d.port = d.server.sockets[0].getsockname()[1]
        d.power_state = PowerState.RUNNING

    async def _listen(self, d: _Desktop) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        if d.port is not None:  # come back on the same port where it is still free
            with contextlib.suppress(OSError):
                return await loop.create_server(lambda: _Console(d), ADDRESS, d.port)
        return await loop.create_server(lambda: _Console(d), ADDRESS, 0)

    async def _power_off(self, d: _Desktop) -> None:
        if d.server is not None:
            d.server.close()
            d.server = None
        for transport in list(d.clients):
            transport.abort()
        d.clients.clear()
        d.power_state = PowerState.STOPPED


class _Console(asyncio.Protocol):
    """One client connection to a simulated desktop's console.

    A protocol object rather than a stream handler: with probes every cycle, the
    simulated desktops' side of each connection runs in the agent's process, and
    this is the cheapest way asyncio serves one (no task, no stream buffers).
    """

    def __init__(self, desktop: _Desktop) -> None:
        self._desktop = desktop
        self._transport: asyncio.Transport | None = None
        self._greeted = False
        self._first = b""  # bytes before the handshake is settled
        self._echoing = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport whatever the loop's class for it (uvloop's is no subclass).
        self._transport = cast(asyncio.Transport, transport)
        self._desktop.clients.add(self._transport)
        if self._desktop.hang:
            return  # accept, never answer
        if self._desktop.latency_s > 0:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._desktop.latency_s, self._greet)
        else:
            self._greet()

    def _greet(self) -> None:
        assert self._transport is not None
        self._greeted = True
        if self._desktop.protocol is ConsoleProtocol.VNC:
            self._transport.write(RFB_BANNER)
        if self._first:
            self.data_received(b"")

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        if self._desktop.hang:
            return
        if self._echoing:
            self._transport.write(data)
            return
        self._first += data
        if not self._greeted:
            return
        kind, length = classify_first_bytes(self._first)
        if kind is FirstBytes.INCOMPLETE:
            return
        rest = self._first
        if kind is FirstBytes.CONNECTION_REQUEST:
            self._transport.write(_CONFIRM)
            rest = self._first[length:]
        self._first = b""
        self._echoing = True
        if rest:
            self._transport.write(rest)

    # A client that sends faster than it reads must not grow our buffer without end.
    def pause_writing(self) -> None:
        assert self._transport is not None
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        assert self._transport is not None
        self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._desktop.clients.discard(self._transport)

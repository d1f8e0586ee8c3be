"""What the agent needs from a hypervisor: its desktops, and power actions on them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from agent.protocol_base import ActionKind, PowerState


class ConsoleProtocol(StrEnum):
    """How a desktop's console endpoint is probed."""

    RDP = "rdp"  # X.224 Connection Request / Confirm
    VNC = "vnc"  # the server's RFB banner
    TCP = "tcp"  # connect only (SPICE, anything without a cheap handshake)


DEFAULT_PORTS = {ConsoleProtocol.RDP: 3389, ConsoleProtocol.VNC: 5900}


@dataclass(frozen=True)
class Desktop:
    name: str
    power_state: PowerState
    pool: str | None = None  # None: the agent's --pool
    address: str | None = None
    port: int | None = None
    protocol: ConsoleProtocol = ConsoleProtocol.TCP
    # Established client connections on the console port; None where the
    # hypervisor cannot see them.
    connections: int | None = None

    @property
    def probeable(self) -> bool:
        """Running with an endpoint: the only desktops whose console should answer."""
        return (
            self.power_state is PowerState.RUNNING
            and self.address is not None
            and self.port is not None
        )


def already_there(action: ActionKind, state: PowerState) -> bool:
    """Whether the action has nothing to do: the broker asks for a state, so a start
    of a running desktop succeeds as it is (libvirt itself would refuse it).

    A reset is asked for so that no previous user's logon survives; a stopped
    guest holds none, and its next boot is as clean as a reset. Failing instead
    would keep the desktop from ever being handed out (the broker retries a
    failed reset and hands out no desktop that still needs one)."""
    if action is ActionKind.START:
        return state in (PowerState.RUNNING, PowerState.STARTING)
    if action is ActionKind.STOP:
        return state in (PowerState.STOPPED, PowerState.STOPPING)
    if action is ActionKind.RESET:
        return state is PowerState.STOPPED
    return False


class HypervisorError(Exception):
    """An action or listing failed; the message is fit for the broker and logs."""


class Hypervisor(Protocol):
    kind: str

    async def desktops(self) -> list[Desktop]:
        """Every desktop on this host, in any power state."""
        ...

    async def perform(self, action: ActionKind, desktop: str) -> PowerState:
        """Carry out a power action; the desktop's power state afterwards.
        Raises HypervisorError."""
        ...

    async def close(self) -> None: ...

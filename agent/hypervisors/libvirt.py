"""Desktops as libvirt domains.

The console endpoint comes from the domain XML's <graphics> element, or from our
own metadata element, which also names the pool and may give the guest's RDP
endpoint (which then takes precedence over the graphics console):

    <metadata>
      <vdi:desktop xmlns:vdi="https://vdi-broker.invalid/ns/1"
                   pool="Finanzen" protocol="rdp" address="10.0.0.5" port="3389"/>
    </metadata>

The libvirt binding is imported when a connection is opened, so the agent runs
on hosts without it (static or simulated desktops). Its calls block, so they run
in a worker thread; one connection stays open for the agent's lifetime (the test
driver keeps its state per connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.hypervisors.base import (
    DEFAULT_PORTS,
    ConsoleProtocol,
    Desktop,
    HypervisorError,
    already_there,
)
from agent.hypervisors.connections import read_established
from agent.protocol_base import (
    LABEL_MAX_LENGTH,
    ActionKind,
    PowerState,
    has_control,
    ip_literal,
)

T = TypeVar("T")

log = logging.getLogger(__name__)

METADATA_NS = "https://vdi-broker.invalid/ns/1"
_METADATA_TAG = f"{{{METADATA_NS}}}desktop"
_LOOPBACK = "127.0.0.1"

# virDomainState values; fixed by libvirt's ABI, so no import is needed to map them.
_POWER_STATES = {
    0: PowerState.UNKNOWN,  # NOSTATE
    1: PowerState.RUNNING,
    2: PowerState.RUNNING,  # BLOCKED: running, waiting on a resource
    3: PowerState.PAUSED,
    4: PowerState.STOPPING,  # SHUTDOWN: being shut down
    5: PowerState.STOPPED,  # SHUTOFF
    6: PowerState.CRASHED,
    7: PowerState.PAUSED,  # PMSUSPENDED
}
_GRAPHICS_PROTOCOLS = {
    "vnc": ConsoleProtocol.VNC,
    "rdp": ConsoleProtocol.RDP,
    "spice": ConsoleProtocol.TCP,  # SPICE's link handshake is not worth speaking here
}


def power_state(libvirt_state: int) -> PowerState:
    return _POWER_STATES.get(libvirt_state, PowerState.UNKNOWN)


@dataclass(frozen=True)
class DomainConsole:
    """What the domain XML says about a desktop's pool and console."""

    pool: str | None = None
    address: str | None = None
    port: int | None = None
    protocol: ConsoleProtocol = ConsoleProtocol.TCP
    on_host: bool = False  # a graphics console on this host: its clients are visible
    # What in the XML could not be used, for the log; the rest still counts.
    problems: tuple[str, ...] = ()


class BadMetadata(ValueError):
    pass


def _ip(value: str) -> str:
    try:
        return ip_literal(value)
    except ValueError:
        raise BadMetadata(f"address {value!r} is not an IP address without a zone") from None


def _port(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        port = int(value)
    except ValueError:
        raise BadMetadata(f"port {value!r} is not a number") from None
    if port == -1:  # autoport while the domain is off
        return None
    if not 1 <= port <= 65535:
        raise BadMetadata(f"port {port} is out of range")
    return port


def _listen_address(graphics: ET.Element, any_address: str) -> str | None:
    """The console's address; None when it listens on no TCP address (a UNIX
    socket, or none). Unset means qemu.conf's vnc_listen, loopback by default
    (a running domain's XML shows the address in use). A console listening on
    all interfaces is reached at `any_address`."""
    listen = graphics.find("listen")
    if listen is not None and listen.get("type") in ("socket", "none"):
        return None
    address = graphics.get("listen") or (listen.get("address") if listen is not None else None)
    if not address:
        return _LOOPBACK
    address = _ip(address)
    return any_address if ipaddress.ip_address(address).is_unspecified else address


def _graphics_console(devices: ET.Element | None, any_address: str) -> DomainConsole:
    if devices is None:
        return DomainConsole()
    for graphics in devices.findall("graphics"):
        protocol = _GRAPHICS_PROTOCOLS.get(graphics.get("type", ""))
        if protocol is None:
            continue
        port = _port(graphics.get("port"))
        address = _listen_address(graphics, any_address)
        if port is None or address is None:
            return DomainConsole(protocol=protocol)
        return DomainConsole(address=address, port=port, protocol=protocol, on_host=True)
    return DomainConsole()


def _metadata_pool(meta: ET.Element) -> str | None:
    pool = (meta.get("pool") or "").strip() or None
    if pool is not None and (len(pool) > LABEL_MAX_LENGTH or has_control(pool)):
        raise BadMetadata(
            f"pool name is longer than {LABEL_MAX_LENGTH} characters or holds a control character"
        )
    return pool


def _metadata_endpoint(meta: ET.Element, address: str) -> DomainConsole:
    try:
        protocol = ConsoleProtocol(meta.get("protocol", ConsoleProtocol.RDP))
    except ValueError:
        raise BadMetadata(f"protocol {meta.get('protocol')!r} is not rdp, vnc or tcp") from None
    port = _port(meta.get("port")) or DEFAULT_PORTS.get(protocol)
    if port is None:
        raise BadMetadata("a tcp endpoint needs a port")
    return DomainConsole(address=_ip(address), port=port, protocol=protocol, on_host=False)


def parse_domain_xml(text: str, any_address: str = _LOOPBACK) -> DomainConsole:
    """Pool and console endpoint of one domain; a console listening on all
    interfaces is reported at `any_address`.

    The pool (our metadata) and the endpoint (our metadata's, else the graphics
    console's) are read apart: what cannot be right in one is left out and named
    in `problems` (so the operator hears of it), and the other still counts. A
    missing console is no problem."""
    # libvirt's own XML for a local domain: trusted input.
    root = ET.fromstring(text)  # noqa: S314
    meta = root.find(f"metadata/{_METADATA_TAG}")
    problems = []
    pool = None
    if meta is not None:
        try:
            pool = _metadata_pool(meta)
        except BadMetadata as exc:
            problems.append(f"ignoring its pool: {exc}")
    address = meta.get("address") if meta is not None else None
    try:
        if meta is not None and address is not None:
            console = _metadata_endpoint(meta, address)
        else:
            console = _graphics_console(root.find("devices"), any_address)
    except BadMetadata as exc:
        problems.append(f"ignoring its console: {exc}")
        console = DomainConsole()
    return dataclasses.replace(console, pool=pool, problems=tuple(problems))


class LibvirtHypervisor:
    kind = "libvirt"

    def __init__(
        self,
        connection: Any,
        proc: Path = Path("/proc"),
        console_address: str = _LOOPBACK,
        uri: str | None = None,
    ) -> None:
        self._conn = connection
        self._uri = uri  # to connect again when libvirtd restarted; None: never
        self._proc = proc
        self._libvirt = _binding()
        # Where the gateway reaches consoles that listen on all interfaces.
        self.console_address = console_address
        # The problems last logged per domain: each is logged once, not every
        # listing (every report interval), and again only after it changed.
        self._problems_said: dict[str, tuple[str, ...]] = {}

    @classmethod
    async def open(
        cls, uri: str, proc: Path = Path("/proc"), console_address: str = _LOOPBACK
    ) -> LibvirtHypervisor:
        libvirt = _binding()
        # By default libvirt also prints every error to stderr; we report them ourselves.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        try:
            conn = await asyncio.to_thread(libvirt.open, uri)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot connect to libvirt at {uri}: {exc}") from None
        return cls(conn, proc, console_address, uri)

    def _alive(self) -> bool:
        try:
            return bool(self._conn.isAlive())
        except self._libvirt.libvirtError:
            return False

    def _reconnected(self) -> bool:
        """After a failed call: when the connection itself is gone (libvirtd was
        restarted, e.g. by a package upgrade), open a new one, so the agent does
        not report every desktop unknown until it is restarted itself. Whether a
        new connection is in place."""
        if self._uri is None or self._alive():
            return False
        libvirt = self._libvirt
        try:
            conn = libvirt.open(self._uri)
        except libvirt.libvirtError as exc:
            raise HypervisorError(
                f"the connection to libvirt at {self._uri} is lost and cannot be opened "
                f"again: {exc.get_error_message()}"
            ) from None
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.close()
        self._conn = conn
        log.warning("the connection to libvirt at %s was lost; connected again", self._uri)
        return True

    def _ask(self, question: Callable[[Any], T]) -> T:
        """`question` put to the connection; asked again on a new connection if it
        failed because the old one is gone (_reconnected). A libvirtError else."""
        try:
            return question(self._conn)
        except self._libvirt.libvirtError:
            if not self._reconnected():
                raise
            return question(self._conn)

    async def desktops(self) -> list[Desktop]:
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[Desktop]:
        libvirt = self._libvirt
        try:
            domains = self._ask(lambda conn: conn.listAllDomains(0))
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"listing domains failed: {exc}") from None
        established = None
        desktops = []
        problems: dict[str, tuple[str, ...]] = {}
        for dom in domains:
            try:
                state, _reason = dom.state()
                xml = dom.XMLDesc(0)
                name = dom.name()
            except libvirt.libvirtError:
                continue  # undefined between listing and asking: gone
            try:
                console = parse_domain_xml(xml, self.console_address)
            except ET.ParseError as exc:
                console = DomainConsole(problems=(f"ignoring its console and pool: {exc}",))
            problems[name] = console.problems
            if console.problems != self._problems_said.get(name, ()):
                for problem in console.problems:
                    log.warning("domain %s: %s", name, problem)
            connections = None
            if console.on_host and console.port is not None:
                if established is None:
                    established = read_established(self._proc)
                connections = established[console.port]
            desktops.append(
                Desktop(
                    name=name,
                    power_state=power_state(state),
                    pool=console.pool,
                    address=console.address,
                    port=console.port,
                    protocol=console.protocol,
                    connections=connections,
                )
            )
        self._problems_said = problems
        return desktops

    async def perform(self, action: ActionKind, desktop: str) -> PowerState:
        return await asyncio.to_thread(self._perform, action, desktop)

    def _perform(self, action: ActionKind, desktop: str) -> PowerState:
        libvirt = self._libvirt
        try:
            dom = self._ask(lambda conn: conn.lookupByName(desktop))
            before = power_state(dom.state()[0])
            if not already_there(action, before):
                {
                    ActionKind.START: dom.create,
                    ActionKind.STOP: dom.shutdown,
                    ActionKind.REBOOT: dom.reboot,
                    ActionKind.RESET: dom.reset,
                }[action]()
            return power_state(dom.state()[0])
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"{action} {desktop}: {exc.get_error_message()}") from None

    async def close(self) -> None:
        def close() -> None:
            # A connection already gone (libvirtd stopped) must not turn the
            # agent's clean stop into a traceback that skips saving its state.
            with contextlib.suppress(self._libvirt.libvirtError):
                self._conn.close()

        await asyncio.to_thread(close)


def _binding() -> Any:
    try:
        import libvirt
    except ImportError:
        raise HypervisorError(
            "the libvirt Python binding is not installed (pip install 'vdi-broker[libvirt]')"
        ) from None
    return libvirt

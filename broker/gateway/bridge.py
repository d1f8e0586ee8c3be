"""Copying bytes between an SSH channel and a TCP connection.

The gateway bridges each tunnel channel to the desktop's console port, and
`vdi-connect` bridges each local client connection to a channel; both use
`Bridge`. It is the data path, so it does as little as possible per chunk: one
write and one integer addition. Counting traffic, idle checks and telemetry read
the counters from outside, on a timer.

Flow control runs both ways: a full socket buffer pauses reading from the
channel (its SSH window then stops the sender), and a full channel window pauses
reading from the socket. A half-close (EOF) is passed on; the bridge closes when
both directions have ended or either side drops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import asyncssh


class Bridge(asyncssh.SSHTCPSession[bytes]):
    """The session of one SSH channel, bridged to one TCP connection.

    `from_channel` counts bytes that came in over SSH and went out to the socket,
    `from_socket` the other way.
    """

    def __init__(self, on_close: Callable[[Bridge], None] | None = None) -> None:
        self.from_channel = 0
        self.from_socket = 0
        self._channel: asyncssh.SSHTCPChannel[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        self._channel_eof = False
        self._socket_eof = False
        self._started = False
        self._closed = False
        self._on_close = on_close
        # The SSH connection went away under the channel (dropped, timed out,
        # hung up with the channel open), rather than the channel being closed.
        self.dropped = False

    @property
    def closed(self) -> bool:
        return self._closed

    def socket_protocol(self) -> asyncio.Protocol:
        """The protocol for the TCP connection (pass its factory to create_connection
        or create_server)."""
        return _SocketSide(self)

    # -- the channel's side (asyncssh.SSHTCPSession) ---------------------------------

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self._channel = chan
        if self._closed:
            chan.close()

    def session_started(self) -> None:
        self._started = True
        if self._transport is not None and not self._closed:
            self._transport.resume_reading()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.from_channel += len(data)
        if self._transport is not None:
            self._transport.write(data)

    def eof_received(self) -> bool:
        self._channel_eof = True
        if self._transport is not None and self._transport.can_write_eof():
            self._transport.write_eof()
        if self._socket_eof:
            self.close()
            return False
        return True

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        # asyncssh passes why when the whole connection is lost, None when only
        # the channel was closed.
        self.dropped = exc is not None
        self.close()

    # -- the socket's side (called by _SocketSide) -------------------------------------

    def _socket_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        if self._closed:
            transport.close()
        elif not self._started:
            # Nothing may be read before the channel is open to take it.
            transport.pause_reading()

    def _socket_data(self, data: bytes) -> None:
        self.from_socket += len(data)
        if self._channel is not None:
            self._channel.write(data)

    def _socket_eof_received(self) -> bool:
        self._socket_eof = True
        if self._channel is None:
            # No channel to pass the EOF on to (it never opened, or asyncssh
            # dropped it with its connection): nothing would ever close this.
            self.close()
            return False
        self._channel.write_eof()
        if self._channel_eof:
            self.close()
            return False
        return True

    def _socket_pause(self) -> None:
        if self._channel is not None:
            self._channel.pause_reading()

    def _socket_resume(self) -> None:
        if self._channel is not None and not self._closed:
            self._channel.resume_reading()

    # -- both -------------------------------------------------------------------------

    def close(self) -> None:
        """Close both sides (idempotent); the on_close callback runs once."""
        if self._closed:
            return
        self._closed = True
        if self._channel is not None:
            self._channel.close()
        if self._transport is not None:
            self._transport.close()
        if self._on_close is not None:
            self._on_close(self)


class _SocketSide(asyncio.Protocol):
    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._bridge._socket_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self._bridge._socket_data(data)

    def eof_received(self) -> bool:
        return self._bridge._socket_eof_received()

    def pause_writing(self) -> None:
        self._bridge._socket_pause()

    def resume_writing(self) -> None:
        self._bridge._socket_resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self._bridge.close()

"""Telling systemd we are ready (Type=notify), without a library.

The protocol is one datagram to the socket in $NOTIFY_SOCKET; outside systemd
the variable is unset and this does nothing. The broker uses it too (it may
import the agent; the agent never imports the broker).
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send e.g. "READY=1" or "STOPPING=1"; True if systemd was told."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract socket namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True

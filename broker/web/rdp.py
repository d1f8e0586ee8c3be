"""The .rdp file a Remote Desktop client opens for a tunnelled desktop.

It points at the local end of the SSH tunnel (127.0.0.1 and the local port of
the connect details), never at the desktop itself: the desktop is reachable only
through the gateway. Drives, printers, ports and the clipboard stay
unredirected, so data stays on the server, as the administrations require.
"""

from __future__ import annotations

import re

SETTINGS = (
    "screen mode id:i:2",
    "use multimon:i:0",
    "session bpp:i:32",
    "smart sizing:i:1",
    "dynamic resolution:i:1",
    "compression:i:1",
    "autoreconnection enabled:i:1",
    "prompt for credentials:i:1",
    "authentication level:i:2",
    "negotiate security layer:i:1",
    "audiomode:i:0",
    "redirectclipboard:i:0",
    "redirectprinters:i:0",
    "redirectdrives:i:0",
    "drivestoredirect:s:",
    "redirectcomports:i:0",
    "redirectsmartcards:i:0",
    "redirectposdevices:i:0",
)


def rdp_file(local_port: int) -> bytes:
    """The file's bytes; Windows' client expects CRLF line ends."""
    lines = (f"full address:s:127.0.0.1:{local_port}", *SETTINGS)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def file_name(pool: str) -> str:
    """An ASCII file name after the pool, for the download."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", pool).strip("-")
    return f"{stem or 'desktop'}.rdp"

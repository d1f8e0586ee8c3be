"""The first bytes of the console protocols, built and parsed without I/O.

Probes use them to check that a desktop's console answers as the protocol
should, not merely that a port is open; the simulated hypervisor uses them to
answer like a real desktop.

RFB (VNC), RFC 6143 section 7.1.1: the server speaks first, a 12-byte
"RFB xxx.yyy\\n". RDP, MS-RDPBCGR 2.2.1.1 and 2.2.1.2: the client sends an
X.224 Connection Request in a TPKT frame (RFC 1006) and the server answers with
a Connection Confirm; that exchange happens before TLS or any credentials.
"""

from __future__ import annotations

import re
from enum import Enum

RFB_BANNER_LENGTH = 12
RFB_BANNER = b"RFB 003.008\n"
_RFB_RE = re.compile(rb"RFB (\d{3})\.(\d{3})\n")

TPKT_VERSION = 3
TPKT_HEADER_LENGTH = 4
# Smallest TPKT frame with an X.224 header: 4 TPKT + LI + code + refs + class.
_X224_MIN_FRAME = TPKT_HEADER_LENGTH + 7
# Console handshakes are a few dozen bytes; anything bigger is not one.
_TPKT_MAX_HANDSHAKE = 1024
_X224_CR = 0xE0  # Connection Request, upper nibble of the TPDU code
_X224_CC = 0xD0  # Connection Confirm
# RDP_NEG_REQ asking for TLS or CredSSP (what mstsc asks); a server answers
# with RDP_NEG_RSP or RDP_NEG_FAILURE, both inside a Connection Confirm.
_NEG_REQ = bytes([0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00])
_NEG_RSP_TLS = bytes([0x02, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00])


class HandshakeError(ValueError):
    """The peer answered, but not with the protocol's handshake."""


def parse_rfb_banner(data: bytes) -> tuple[int, int]:
    """(major, minor) of an RFB server banner."""
    match = _RFB_RE.fullmatch(data)
    if match is None:
        raise HandshakeError(f"not an RFB banner: {data[:RFB_BANNER_LENGTH]!r}")
    return int(match.group(1)), int(match.group(2))


def _x224_frame(code: int, source_ref: int, payload: bytes) -> bytes:
    # X.224 fixed part after the length indicator: code, DST-REF(2), SRC-REF(2), class.
    header = bytes([code, 0, 0, source_ref >> 8, source_ref & 0xFF, 0])
    tpdu = bytes([len(header) + len(payload)]) + header + payload
    length = TPKT_HEADER_LENGTH + len(tpdu)
    return bytes([TPKT_VERSION, 0, length >> 8, length & 0xFF]) + tpdu


def connection_request() -> bytes:
    """An X.224 Connection Request as an RDP client sends it first."""
    return _x224_frame(_X224_CR, 0, _NEG_REQ)


def connection_confirm() -> bytes:
    """An X.224 Connection Confirm selecting TLS, as an RDP server answers."""
    return _x224_frame(_X224_CC, 0x1234, _NEG_RSP_TLS)


def tpkt_length(header: bytes) -> int:
    """Total frame length from a 4-byte TPKT header."""
    if len(header) != TPKT_HEADER_LENGTH or header[0] != TPKT_VERSION or header[1] != 0:
        raise HandshakeError(f"not a TPKT header: {header!r}")
    length = int.from_bytes(header[2:4], "big")
    if not _X224_MIN_FRAME <= length <= _TPKT_MAX_HANDSHAKE:
        raise HandshakeError(f"TPKT length {length} is not an X.224 handshake")
    return length


def tpkt_bytes_needed(data: bytes) -> int:
    """How many bytes make the first TPKT frame, judging by what has arrived: the
    header first, then the length it announces."""
    if len(data) < TPKT_HEADER_LENGTH:
        return TPKT_HEADER_LENGTH
    return tpkt_length(data[:TPKT_HEADER_LENGTH])


def _tpdu_code(frame: bytes) -> int:
    return frame[TPKT_HEADER_LENGTH + 1] & 0xF0


def is_connection_confirm(frame: bytes) -> bool:
    """Whether a whole TPKT frame (header included) carries an X.224 Connection Confirm."""
    return len(frame) >= _X224_MIN_FRAME and _tpdu_code(frame) == _X224_CC


class FirstBytes(Enum):
    CONNECTION_REQUEST = "connection_request"
    OTHER = "other"
    INCOMPLETE = "incomplete"


def classify_first_bytes(data: bytes) -> tuple[FirstBytes, int]:
    """What a server received first: an RDP Connection Request (and its length, so
    the caller can answer it and treat the rest as data), other data, or too few
    bytes to tell yet."""
    if not data:
        return FirstBytes.INCOMPLETE, 0
    if data[0] != TPKT_VERSION:
        return FirstBytes.OTHER, 0
    if len(data) < TPKT_HEADER_LENGTH:
        return FirstBytes.INCOMPLETE, 0
    try:
        length = tpkt_length(data[:TPKT_HEADER_LENGTH])
    except HandshakeError:
        return FirstBytes.OTHER, 0
    if len(data) < length:
        return FirstBytes.INCOMPLETE, 0
    if _tpdu_code(data) != _X224_CR:
        return FirstBytes.OTHER, 0
    return FirstBytes.CONNECTION_REQUEST, length

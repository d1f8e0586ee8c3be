"""RFB banner and X.224 handshake bytes, built and parsed."""

from __future__ import annotations

import pytest

from agent.handshake import (
    RFB_BANNER,
    FirstBytes,
    HandshakeError,
    classify_first_bytes,
    connection_confirm,
    connection_request,
    is_connection_confirm,
    parse_rfb_banner,
    tpkt_length,
)


def test_rfb_banner_parses() -> None:
    assert parse_rfb_banner(RFB_BANNER) == (3, 8)
    assert parse_rfb_banner(b"RFB 003.889\n") == (3, 889)


@pytest.mark.parametrize("data", [b"SSH-2.0-Open", b"RFB 3.8\n", b"RFB 003.008\r", b""])
def test_other_banners_are_refused(data: bytes) -> None:
    with pytest.raises(HandshakeError):
        parse_rfb_banner(data)


def test_connection_request_is_a_tpkt_framed_x224_cr_with_rdp_negotiation() -> None:
    cr = connection_request()
    # TPKT v3, length 19; X.224 LI 14, CR code 0xE0; RDP_NEG_REQ asking TLS|CredSSP
    assert cr == bytes.fromhex("030000130ee000000000000100080003000000")
    assert tpkt_length(cr[:4]) == len(cr)


def test_connection_confirm_is_recognised_and_a_request_is_not() -> None:
    cc = connection_confirm()
    assert tpkt_length(cc[:4]) == len(cc)
    assert is_connection_confirm(cc)
    assert not is_connection_confirm(connection_request())


@pytest.mark.parametrize(
    "header", [b"\x02\x00\x00\x13", b"\x03\x01\x00\x13", b"\x03\x00\x00\x05", b"\x03\x00\xff\xff"]
)
def test_tpkt_headers_that_are_no_handshake(header: bytes) -> None:
    with pytest.raises(HandshakeError):
        tpkt_length(header)


def test_server_side_classification_of_first_bytes() -> None:
    cr = connection_request()
    assert classify_first_bytes(cr) == (FirstBytes.CONNECTION_REQUEST, len(cr))
    assert classify_first_bytes(cr + b"more")[0] is FirstBytes.CONNECTION_REQUEST
    assert classify_first_bytes(cr[:3]) == (FirstBytes.INCOMPLETE, 0)
    assert classify_first_bytes(cr[:10]) == (FirstBytes.INCOMPLETE, 0)
    assert classify_first_bytes(b"hello") == (FirstBytes.OTHER, 0)
    assert classify_first_bytes(b"\x03\x07junk") == (FirstBytes.OTHER, 0)
    assert classify_first_bytes(connection_confirm()) == (FirstBytes.OTHER, 0)

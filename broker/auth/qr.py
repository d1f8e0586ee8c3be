"""QR codes of otpauth URIs, as SVG for the portal and as text for a terminal."""

from __future__ import annotations

import io

import segno


def svg(data: str) -> str:
    """A scalable SVG (a viewBox, no fixed size): the portal's style sizes it."""
    qr = segno.make(data, error="m")
    out = io.BytesIO()
    qr.save(
        out, kind="svg", scale=4, border=2, xmldecl=False, svgns=True, title="QR", omitsize=True
    )
    return out.getvalue().decode("utf-8")


def terminal(data: str) -> str:
    qr = segno.make(data, error="m")
    out = io.StringIO()
    qr.terminal(out=out, compact=True, border=2)
    return out.getvalue()

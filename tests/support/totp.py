"""TOTP codes from the independent reference implementation, oathtool."""

from __future__ import annotations

import datetime as dt
import subprocess


def oathtool_code(secret: str, at: dt.datetime) -> str:
    when = at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    out = subprocess.run(
        ["oathtool", "--totp", "-b", secret, "--now", when],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()

"""The portal's message catalogue: both languages complete, every text the code and
templates ask for present, and the .rdp file as a Remote Desktop client reads it."""

from __future__ import annotations

import re
import string
from pathlib import Path

from broker.errors import InvalidInput
from broker.sessions.service import Refused
from broker.web import i18n, rdp
from broker.web.i18n import DE, EN, SERVICE_ERRORS_DE, error_text, translator

WEB = Path(i18n.__file__).parent
# t("key"), t('key'), say(..., "key"), Done("key"), BadField("key", "label"), ...
LITERAL_KEY = re.compile(r"""["']((?:[a-z_]+\.)+[a-z_0-9]+)["']""")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    assert DE.keys() == EN.keys()
    for key in DE:
        assert placeholders(DE[key]) == placeholders(EN[key]), key
        assert DE[key].strip() and EN[key].strip(), key


def test_every_key_the_portal_names_exists() -> None:
    sources = [*WEB.glob("*.py"), *WEB.glob("templates/**/*.html")]
    named = set()
    for path in sources:
        for key in LITERAL_KEY.findall(path.read_text(encoding="utf-8")):
            prefix, suffix = key.split(".")[0], key.rsplit(".", 1)[1]
            if suffix not in ("html", "py") and any(k.startswith(prefix + ".") for k in DE):
                named.add(key)
    assert named, "the scan found no keys"
    missing = sorted(k for k in named if k not in DE)
    assert missing == []


def test_keys_built_from_states_exist() -> None:
    for prefix, values in {
        "state": ("pending", "active", "disconnected", "ended"),
        "mode": ("home", "field"),
        "host": ("active", "draining", "maintenance"),
        "role": ("staff", "admin"),
        "pool": ("floating", "persistent"),
        "day": ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        "scope": ("user", "department"),
        "user": ("locked", "unlocked"),
    }.items():
        for value in values:
            assert f"{prefix}.{value}" in DE, f"{prefix}.{value}"


def test_translator_formats_and_falls_back_to_german() -> None:
    assert translator("en")("desktops.free", free=1, capacity=3) == "1 of 3 free"
    assert translator("fr")("login.title") == "Anmeldung"


def test_error_texts_german_by_code_english_as_the_broker_says() -> None:
    bad = InvalidInput("The code has six digits.", code="invalid_request")
    assert error_text(bad, "en") == "The code has six digits."
    assert error_text(bad, "de") == SERVICE_ERRORS_DE["invalid_request"]
    from broker.domain import RefusalCode
    from broker.placement.model import Refuse

    refusal = Refused(
        Refuse(RefusalCode.LICENCE_LIMIT, params={"pool": "P", "max_sessions": 2}),
        "de",
        pool="P",
        user="maria",
    )
    assert error_text(refusal, "de") == "Alle 2 Lizenzen des Pools P sind belegt."


def test_rdp_file_points_at_the_tunnel_and_keeps_data_on_the_server() -> None:
    body = rdp.rdp_file(13389)
    lines = body.decode("ascii").split("\r\n")
    assert lines[0] == "full address:s:127.0.0.1:13389"
    assert lines[-1] == ""  # ends with CRLF
    settings = {line.split(":")[0]: line for line in lines if line}
    for name in ("redirectclipboard", "redirectdrives", "redirectprinters"):
        assert settings[name] == f"{name}:i:0"
    assert rdp.file_name("Außendienst Süd") == "Au-endienst-S-d.rdp"
    assert rdp.file_name("ÄÖÜ") == "desktop.rdp"

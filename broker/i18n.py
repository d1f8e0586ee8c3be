"""Which language to answer in: German by default, English on request."""

from __future__ import annotations

SUPPORTED = ("de", "en")


def negotiate(accept_language: str | None, default: str = "de") -> str:
    """The first supported language of an Accept-Language header, by q-value."""
    if not accept_language:
        return default
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        language = tag.strip().lower().split("-")[0]
        if language in SUPPORTED and quality > 0:
            choices.append((-quality, position, language))
    return min(choices)[2] if choices else default

"""Refusals a person understands, in German and English."""

from __future__ import annotations

from typing import Any

from broker.domain import RefusalCode
from broker.placement.model import Refuse

MESSAGES: dict[tuple[str, str], dict[str, str]] = {
    (RefusalCode.CAPACITY_FULL, ""): {
        "de": "Im Pool {pool} ist gerade kein Desktop frei. Bitte versuchen Sie es in einigen "
        "Minuten erneut.",
        "en": "No desktop is free in pool {pool} right now. Please try again in a few minutes.",
    },
    (RefusalCode.CAPACITY_FULL, "priority_reserve"): {
        "de": "Die letzten Plätze im Pool {pool} sind für vorrangige Aufgaben (etwa den "
        "Krisenstab) reserviert. Bitte versuchen Sie es später erneut.",
        "en": "The last places in pool {pool} are reserved for priority tasks (such as the "
        "crisis team). Please try again later.",
    },
    (RefusalCode.LICENCE_LIMIT, ""): {
        "de": "Alle {max_sessions} Lizenzen des Pools {pool} sind belegt.",
        "en": "All {max_sessions} licences of pool {pool} are in use.",
    },
    (RefusalCode.DEPARTMENT_QUOTA, ""): {
        "de": "Aus der Abteilung {department} arbeiten bereits {limit} Personen von zu Hause; "
        "mehr sind gleichzeitig nicht vorgesehen, damit das Amt besetzt bleibt.",
        "en": "{limit} staff of {department} already work from home, the most allowed at once "
        "so that the office stays staffed.",
    },
    (RefusalCode.OUTSIDE_SCHEDULE, ""): {
        "de": "Ihre Telearbeitsvereinbarung erlaubt jetzt keinen Zugang. Erlaubt: {windows_de}.",
        "en": "Your telework agreement does not allow access now. Allowed: {windows_en}.",
    },
    (RefusalCode.NOT_ENTITLED, ""): {
        "de": "Sie sind für den Pool {pool} nicht freigeschaltet.",
        "en": "You are not entitled to use pool {pool}.",
    },
    (RefusalCode.NOT_ENTITLED, "field_pool"): {
        "de": "Der Pool {pool} ist für den Außendienst bestimmt.",
        "en": "Pool {pool} is meant for field work.",
    },
    (RefusalCode.NOT_ENTITLED, "field_mode"): {
        "de": "Nur Beschäftigte im Außendienst können im Außendienst-Modus arbeiten.",
        "en": "Only field staff can work in field mode.",
    },
    (RefusalCode.HOST_UNAVAILABLE, ""): {
        "de": "Die Server des Pools {pool} sind gerade nicht erreichbar. Die IT ist informiert.",
        "en": "The servers of pool {pool} cannot be reached right now. IT has been alerted.",
    },
}


def message(refusal: Refuse, language: str) -> str:
    texts = MESSAGES.get((refusal.code, refusal.reason)) or MESSAGES[(refusal.code, "")]
    params: dict[str, Any] = {"pool": "", **refusal.params}
    return texts.get(language, texts["de"]).format(**params)

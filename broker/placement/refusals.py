"""Refusals a person understands, in German and English."""

from __future__ import annotations

from typing import Any

from broker.domain import RefusalCode
from broker.placement.model import Refuse

# Variants of a text for counts of none and one ("all 0 licences are in use").
NONE, ONE = "none", "one"

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
    (RefusalCode.LICENCE_LIMIT, ONE): {
        "de": "Die einzige Lizenz des Pools {pool} ist belegt.",
        "en": "The only licence of pool {pool} is in use.",
    },
    (RefusalCode.LICENCE_LIMIT, NONE): {
        "de": "Der Pool {pool} hat derzeit keine Lizenzen.",
        "en": "Pool {pool} has no licences at present.",
    },
    (RefusalCode.DEPARTMENT_QUOTA, ""): {
        "de": "Aus der Abteilung {department} {work_de} bereits {people_de} von zu Hause; "
        "mehr sind gleichzeitig nicht vorgesehen, damit das Amt besetzt bleibt.",
        "en": "{people_en} of {department} already {work_en} from home, the most allowed at "
        "once so that the office stays staffed.",
    },
    (RefusalCode.DEPARTMENT_QUOTA, NONE): {
        "de": "Für die Abteilung {department} ist derzeit keine Telearbeit vorgesehen, damit "
        "das Amt besetzt bleibt.",
        "en": "No one of {department} may work from home at present, so that the office stays "
        "staffed.",
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
    (RefusalCode.HOST_UNAVAILABLE, "desktop_missing"): {
        "de": "Ihr Desktop im Pool {pool} ist auf seinem Server gerade nicht zu finden. Bitte "
        "versuchen Sie es in einigen Minuten erneut.",
        "en": "Your desktop in pool {pool} cannot be found on its server right now. Please try "
        "again in a few minutes.",
    },
    (RefusalCode.HOST_UNAVAILABLE, ""): {
        "de": "Die Server des Pools {pool} sind gerade nicht erreichbar. Die IT ist informiert.",
        "en": "The servers of pool {pool} cannot be reached right now. IT has been alerted.",
    },
}


# Not a refusal (the pool does not exist: 404 unknown_pool), but said to the same
# people, in the same languages.
UNKNOWN_POOL = {
    "de": "Es gibt keinen Pool {pool}.",  # as vdi-connect says it
    "en": "There is no pool {pool}.",
}


def unknown_pool(pool: str, language: str) -> str:
    return UNKNOWN_POOL.get(language, UNKNOWN_POOL["de"]).format(pool=pool)


def message(refusal: Refuse, language: str) -> str:
    params: dict[str, Any] = {"pool": "", **refusal.params}
    count = params.get("limit", params.get("max_sessions"))
    variant = refusal.reason or (NONE if count == 0 else ONE if count == 1 else "")
    texts = MESSAGES.get((refusal.code, variant)) or MESSAGES[(refusal.code, "")]
    if "limit" in params:
        one = params["limit"] == 1
        params["people_de"] = "1 Person" if one else f"{params['limit']} Personen"
        params["people_en"] = "1 person" if one else f"{params['limit']} people"
        params["work_de"], params["work_en"] = (
            ("arbeitet", "works") if one else ("arbeiten", "work")
        )
    return texts.get(language, texts["de"]).format(**params)

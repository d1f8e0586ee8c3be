"""What every form of the portal does after its checks: read fields, run one
service call, and answer POST-redirect-GET with a notice in the page's language.

A refused action (any broker error) changes nothing and comes back as an error
notice on the page the form was on; so does input the portal cannot even parse.
A form people type into gives `again`: its page is then shown once more with the
notice and what was typed, so nothing has to be entered anew.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response
from starlette.datastructures import FormData

from broker.errors import InvalidInput, VdiError
from broker.numbers import ascii_decimal, ascii_int
from broker.runtime import Runtime
from broker.store.types import MAX_INT
from broker.text import encodable
from broker.web.i18n import error_text, translator
from broker.web.pages import Notice, language_of, redirect_with


@dataclass(frozen=True)
class Done:
    """The notice of a successful action: a catalogue key and its parameters."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)


class BadField(InvalidInput):
    """Input a form field cannot hold: the catalogue keys of the complaint and of
    the field's label."""

    def __init__(self, key: str, label: str) -> None:
        super().__init__(key, code="bad_field")
        self.key = key
        self.label = label


async def read_form(request: Request) -> FormData:
    """The posted form, refused (400) when a field holds text that UTF-8 cannot.

    Starlette decodes multipart fields with whatever charset the client names, and
    UTF-7 or unicode_escape turn a few bytes into lone surrogates
    (broker.text.encodable)."""
    form = await request.form()
    for key, value in form.multi_items():
        if not encodable(key) or (isinstance(value, str) and not encodable(value)):
            raise InvalidInput(
                "The form could not be read; send it as UTF-8.", code="bad_form", status=400
            )
    return form


def text(form: FormData, name: str) -> str:
    """A text field, trimmed; empty when missing."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def texts(form: FormData, name: str) -> list[str]:
    """All values of a repeated field (check boxes)."""
    return [v for v in form.getlist(name) if isinstance(v, str)]


def whole_number(value: str, label: str) -> int | None:
    """An optional whole number; empty is None. `label` is the field's catalogue key."""
    if not value:
        return None
    number = ascii_int(value)
    if number is None or abs(number) > MAX_INT:
        raise BadField("form.number", label)
    return number


def share(value: str, label: str) -> float | None:
    """An optional percentage 0..100 (comma or dot), as a fraction 0..1."""
    if not value:
        return None
    percent = ascii_decimal(value)
    if percent is None or percent > 100:
        raise BadField("form.percent", label)
    return percent / 100


# The page with the form again: the refusal's notice and its status.
Again = Callable[[Notice, int], Awaitable[Response]]


async def outcome(
    request: Request,
    rt: Runtime,
    action: Awaitable[Done],
    back: str,
    again: Again | None = None,
) -> Response:
    """Run the action; redirect to `back` with its notice. A refusal redirects
    there too, or, given `again`, shows the form's page with what was typed."""
    t = translator(language_of(request, rt))
    try:
        done = await action
    except BadField as bad:
        notice, status = Notice("error", t(bad.key, field=t(bad.label))), bad.status
    except VdiError as exc:
        notice, status = Notice("error", error_text(exc, language_of(request, rt))), exc.status
    else:
        return redirect_with(back, rt, Notice("ok", t(done.key, **done.params)))
    if again is not None:
        return await again(notice, status)
    return redirect_with(back, rt, notice)

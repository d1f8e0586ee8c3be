"""The policies page: department caps on telework, telework hours, the priority
reserve of each pool and the priority task areas.

Checking and storing is broker.policy.store's and broker.pools.service's; this
module turns form fields into their arguments (percentages into shares, ticked
weekdays into a day list). A refused form comes back on the page with what was
typed in it (`typed`, by form), so an administrator corrects it instead of
entering it all again.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData

from broker.deps import Identity, RuntimeDep
from broker.policy import store
from broker.policy.schedule import DAYS
from broker.pools import service as pools
from broker.runtime import Runtime
from broker.web.access import AdminForm, AdminPageIdentity, Posted
from broker.web.forms import Again, Done, outcome, share, text, texts, whole_number
from broker.web.pages import Notice, render

router = APIRouter(prefix="/admin/policies", include_in_schema=False)
BACK = "/admin/policies"


@router.get("")
async def policies_page(request: Request, rt: RuntimeDep, who: AdminPageIdentity) -> Response:
    return await _page(request, rt, who)


async def _page(
    request: Request,
    rt: Runtime,
    who: Identity,
    *,
    status: int = 200,
    notice: Notice | None = None,
    typed: dict[str, FormData] | None = None,
) -> Response:
    overview = await store.overview(rt)
    return render(
        request, rt, "admin/policies.html", who=who, status=status, notice=notice, here=BACK,
        caps=overview["departments"], schedules=overview["schedules"],
        classes=overview["priority_classes"], pools=await pools.list_all(rt), days=DAYS,
        typed=typed or {},
    )  # fmt: skip


def _again(request: Request, rt: Runtime, posted: Posted, form: str) -> Again:
    """The page once more, the refused form `form` filled in as it was sent."""

    async def page(notice: Notice, status: int) -> Response:
        typed = {form: posted.form}
        return await _page(request, rt, posted.who, status=status, notice=notice, typed=typed)

    return page


@router.post("/caps")
async def set_cap(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    """A number of sessions or a percentage of the staff; neither removes the cap."""

    async def save() -> Done:
        form = posted.form
        cap = await store.set_department_cap(
            rt,
            text(form, "department"),
            max_sessions=whole_number(text(form, "max_sessions"), "caps.max"),
            share=share(text(form, "percent"), "caps.percent_field"),
            actor=posted.who.user.name,
        )
        department = text(form, "department")
        return Done("caps.removed" if cap is None else "caps.saved", {"department": department})

    return await outcome(request, rt, save(), BACK, _again(request, rt, posted, "caps"))


@router.post("/caps/remove")
async def remove_cap(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    async def remove() -> Done:
        department = text(posted.form, "department")
        await store.set_department_cap(
            rt, department, max_sessions=None, share=None, actor=posted.who.user.name
        )
        return Done("caps.removed", {"department": department})

    return await outcome(request, rt, remove(), BACK)


@router.post("/schedules")
async def add_schedule(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    async def add() -> Done:
        form = posted.form
        await store.add_schedule(
            rt,
            text(form, "scope"),
            text(form, "subject"),
            ",".join(day for day in texts(form, "days") if day in DAYS),
            text(form, "start"),
            text(form, "end"),
            posted.who.user.name,
        )
        return await _schedules_done(rt, "schedules.added")

    return await outcome(request, rt, add(), BACK, _again(request, rt, posted, "schedules"))


@router.post("/schedules/remove")
async def remove_schedule(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    async def remove() -> Done:
        # A missing id is no schedule: the store says so.
        schedule_id = whole_number(text(posted.form, "schedule"), "schedules.title") or 0
        await store.remove_schedule(rt, schedule_id, posted.who.user.name)
        return await _schedules_done(rt, "schedules.removed")

    return await outcome(request, rt, remove(), BACK)


async def _schedules_done(rt: Runtime, key: str) -> Done:
    """The notice after a change of telework windows; it names the home sessions
    the change finds outside their windows, as the CLI and the API do."""
    outside = await store.sessions_outside_windows(rt)
    if not outside:
        return Done(key)
    minutes = f"{rt.settings.schedule_grace_s / 60:g}"
    return Done(f"{key}_outside", {"count": outside, "minutes": minutes})


@router.post("/reserve")
async def set_reserve(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    """An empty field is no reserve."""

    async def save() -> Done:
        pool = text(posted.form, "pool")
        reserve = share(text(posted.form, "percent"), "reserve.label") or 0.0
        changes = pools.PoolChanges(priority_reserve=reserve)
        saved = await pools.update(rt, pool, changes, posted.who.user.name)
        return Done("reserve.saved", {"pool": saved["name"]})

    return await outcome(request, rt, save(), BACK, _again(request, rt, posted, "reserve"))


@router.post("/classes")
async def add_class(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    async def add() -> Done:
        name = text(posted.form, "name")
        created = await store.add_priority_class(rt, name, posted.who.user.name)
        return Done("classes.added" if created else "classes.exists", {"name": name})

    return await outcome(request, rt, add(), BACK, _again(request, rt, posted, "classes"))


@router.post("/classes/remove")
async def remove_class(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    async def remove() -> Done:
        name = text(posted.form, "name")
        await store.remove_priority_class(rt, name, posted.who.user.name)
        return Done("classes.removed", {"name": name})

    return await outcome(request, rt, remove(), BACK)

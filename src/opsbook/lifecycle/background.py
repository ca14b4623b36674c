"""The lifecycle's work inside ``opsbook serve``: owners' daily reminders of reviews and drills
due (:mod:`opsbook.lifecycle.reminders`).

The first pass waits ``FIRST_AFTER`` after start (a server restarted in a loop does not page on
each start; the claim in ``schedule_claims`` makes the message once a day per owner anyway),
then the loop looks every ``EVERY``. Queued reminders are delivered by the incidents' outbox
loop like every other notification. Exactly once across replicas: the per-owner, per-day claim.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opsbook.executions.context import AppContext

FIRST_AFTER = 600.0
EVERY = 3600.0


def remind_once(ctx: AppContext) -> int:
    """One pass: queue today's reminders not yet sent; wake the outbox. Returns how many
    owners were reminded."""
    from opsbook.incidents.background import deliver_soon  # noqa: PLC0415
    from opsbook.lifecycle.reminders import send_reminders  # noqa: PLC0415

    sent = [r for r in send_reminders(db=ctx.db, workspace=ctx.workspace) if r.state == "queued"]
    deliver_soon(ctx, [n for r in sent for n in r.notifications])
    return len(sent)


async def run_background(ctx: AppContext) -> None:
    """Run until cancelled; a pass that fails is logged and tried again next time."""
    from opsbook.logs import get_logger  # noqa: PLC0415

    await asyncio.sleep(FIRST_AFTER)
    while True:
        try:
            remind_once(ctx)
        except Exception as exc:  # a bad contacts.yaml must not stop serve
            get_logger().error("lifecycle.reminders", exc_info=exc)
        await asyncio.sleep(EVERY)

"""How often runbooks are opened (issue 15, runbook metrics): one row per time a person opens
a runbook or one of its procedures — the console's runbook page and a procedure's run form, the
API's getRunbook/getProcedure, `opsbook runbooks show`. Listing the catalogue is not opening.

Reading a runbook is not a state change, so it is not audited; the row is a counter that never
stops the page from showing (a failed insert is logged and the page is served).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opsbook.errors import OpsbookError

if TYPE_CHECKING:
    from opsbook.db import Database

VIA = ("console", "api", "cli")


def record_open(
    *, db: Database, runbook_id: str, procedure_id: str | None, person: str, via: str
) -> None:
    when = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    try:
        db.execute(
            "INSERT INTO runbook_opens (runbook_id, procedure_id, person, via, opened_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (runbook_id, procedure_id, person, via, when),
        )
    except OpsbookError as exc:  # a counter: the runbook is shown anyway
        from opsbook.logs import get_logger  # noqa: PLC0415

        get_logger().warning(
            "runbook.open.not_counted", fields={"runbook": runbook_id, "error": exc.message}
        )

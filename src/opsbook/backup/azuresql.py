"""Production's shape of recovery (issue 13): Azure SQL Database point-in-time restore and
failover groups, as the ``az`` commands an operator runs.

Production keeps the ledger in Azure SQL Database (``environments/production.yaml``:
``resource_group``, ``subscription``, ``databases.primary.server``, ``databases.dr.server``,
``databases.ledger.database``, ``failover_group``). Azure takes the backups itself (full,
differential and log backups, restorable to any second of the retention window), so recovery
there is:

- **point-in-time restore** into a *new* database (Azure never overwrites one):
  ``az sql db restore --dest-name NEW --time T``; then ``az sql db show --query status`` until it
  is ``Online``. Cutting the services over to it is the runbook's approved step.
- **failover** of the failover group to the DR server: ``az sql failover-group set-primary`` run
  *against the secondary* (the server that becomes primary), ``--allow-data-loss`` for a forced
  failover when the primary region is down; **failback** is the same against the original
  primary.

Every command is an argv list run without a shell (a value can never inject one). With
``dry_run`` nothing runs: :meth:`AzureSqlRecovery.run` returns the commands unrun. Credentials
are the operator's ``az login`` session; ``--subscription`` is on every command so a wrong
default subscription cannot redirect one.

Syntax is that of azure-cli's ``sql`` module (``az sql db restore --dest-name/--time``,
``az sql failover-group set-primary --allow-data-loss``, ``az sql db replica list-links``).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsbook.errors import Location, OpsbookError, StepError, UsageError, ValidationError

if TYPE_CHECKING:
    from opsbook.db import Database

__all__ = [
    "COMMAND_TIMEOUT",
    "LAG_SECONDS_QUERY",
    "AzCommandFailed",
    "AzureSqlRecovery",
    "expected_output",
    "parse_target",
]

#: A restore of a large database or a failover waits for Azure's long-running operation (az
#: waits by default): generous, but bounded.
COMMAND_TIMEOUT = 3600.0

#: Seconds behind: neither ARM nor az report it. The replication link list gives the state
#: (``CATCH_UP`` = healthy, ``SEEDING``, ``SUSPENDED``, ``PENDING``); the lag in seconds is this
#: DMV, queried with T-SQL on the primary database (an opsbook ``sql`` step).
LAG_SECONDS_QUERY = (
    "SELECT partner_server, partner_database, replication_state_desc, role_desc, "
    "replication_lag_sec, last_replication FROM sys.dm_geo_replication_link_status"
)

#: Characters Azure SQL refuses in a database name (and names end neither in "." nor " ").
_BAD_NAME = re.compile(r"[<>*%&:\\/?\x00-\x1f]")


class AzCommandFailed(StepError):
    """An ``az`` command failed (exit != 0, timeout, or a check that did not read as expected).

    ``results`` holds what ran up to and including the failing command."""

    code = "az_command_failed"

    def __init__(self, message: str, *, results: list[dict[str, Any]], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.results = results


def _z(when: datetime) -> str:
    """UTC, whole seconds, ``Z``: the form ``az sql db restore --time`` takes."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_target(text: str) -> datetime:
    """An ISO 8601 time with a zone (``2026-12-04T03:15:00Z``, ``...+01:00``) as UTC.

    A time without a zone is refused: in a point-in-time restore an hour's ambiguity is an
    hour of the ledger."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{text!r} is not an ISO 8601 time",
            field="--to",
            hint="e.g. --to 2026-12-04T03:15:00Z",
        ) from None
    if when.tzinfo is None:
        raise UsageError(
            f"{text!r} has no time zone",
            field="--to",
            hint=f"say which zone, e.g. --to {text.strip()}Z for UTC",
        )
    return when.astimezone(UTC)


def expected_output(argv: Sequence[str]) -> str | None:
    """What a check command in a plan must print for the plan to go on (None: not a check).

    ``az sql db show --query status`` after a restore must read ``Online``; ``az sql
    failover-group show --query replicationRole`` after set-primary must read ``Primary``."""
    args = list(argv)
    if "--query" not in args or args[-2:] != ["-o", "tsv"]:
        return None
    query = args[args.index("--query") + 1]
    if args[1:4] == ["sql", "db", "show"] and query == "status":
        return "Online"
    if args[1:4] == ["sql", "failover-group", "show"] and query == "replicationRole":
        return "Primary"
    return None


class AzureSqlRecovery:
    """Point-in-time restore and failover-group commands for one environment's Azure SQL.

    ``environment`` is the parsed environment file; ``env_file`` names it in errors. Keys are
    checked when a plan needs them, so a restore is not refused for want of a failover group.
    """

    def __init__(
        self,
        *,
        environment: Mapping[str, Any],
        dry_run: bool = False,
        env_file: str | None = None,
        az: str = "az",
        timeout: float = COMMAND_TIMEOUT,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.environment = environment
        self.dry_run = dry_run
        self.env_file = env_file or f"environments/{environment.get('name') or 'production'}.yaml"
        self.az = az
        self.timeout = timeout
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- configuration ---------------------------------------------------------------------

    def _need(self, dotted: str, *, why: str) -> str:
        node: Any = self.environment
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is None or not str(node).strip():
            raise ValidationError(
                f"the environment has no `{dotted}` ({why})",
                field=dotted,
                location=Location(self.env_file),
                hint=f"add `{dotted}` to {self.env_file}",
            )
        return str(node).strip()

    @property
    def resource_group(self) -> str:
        return self._need("resource_group", why="the Azure resource group of the SQL servers")

    @property
    def subscription(self) -> str:
        return self._need("subscription", why="the Azure subscription, pinned on every command")

    @property
    def primary_server(self) -> str:
        return self._need("databases.primary.server", why="the primary Azure SQL server")

    @property
    def dr_server(self) -> str:
        return self._need("databases.dr.server", why="the DR Azure SQL server")

    @property
    def database(self) -> str:
        return self._need("databases.ledger.database", why="the ledger database's name")

    @property
    def ledger_server(self) -> str:
        ledger = (self.environment.get("databases") or {}).get("ledger") or {}
        if isinstance(ledger, Mapping) and ledger.get("server"):
            return str(ledger["server"]).strip()
        return self.primary_server

    @property
    def failover_group(self) -> str:
        return self._need(
            "failover_group",
            why="the failover group between the primary and DR servers; "
            "`az sql failover-group list -g RG -s SERVER` names it",
        )

    def describe(self) -> dict[str, Any]:
        """The Azure resources this environment's recovery acts on (keys that are set)."""
        out: dict[str, Any] = {}
        for key in (
            "resource_group",
            "subscription",
            "primary_server",
            "dr_server",
            "ledger_server",
            "database",
            "failover_group",
        ):
            try:
                out[key] = getattr(self, key)
            except ValidationError:
                out[key] = None
        return out

    # -- commands --------------------------------------------------------------------------

    def _cmd(self, *args: str, server: str, name: str) -> list[str]:
        return [
            self.az,
            *args,
            "--resource-group",
            self.resource_group,
            "--server",
            server,
            "--name",
            name,
        ]

    def _show_db(self, *, name: str, query: str, server: str) -> list[str]:
        return [
            *self._cmd("sql", "db", "show", server=server, name=name),
            "--subscription",
            self.subscription,
            "--query",
            query,
            "-o",
            "tsv",
        ]

    def _show_fog(self, *, server: str) -> list[str]:
        return [
            *self._cmd("sql", "failover-group", "show", server=server, name=self.failover_group),
            "--subscription",
            self.subscription,
            "--query",
            "replicationRole",
            "-o",
            "tsv",
        ]

    # -- point-in-time restore -------------------------------------------------------------

    def window_command(self, *, server: str | None = None) -> list[str]:
        """``az sql db show ... --query earliestRestoreDate -o tsv``: the window's start."""
        return self._show_db(
            name=self.database, query="earliestRestoreDate", server=server or self.ledger_server
        )

    def restore_window(self, *, server: str | None = None) -> dict[str, Any]:
        """The restore window ``[earliest, now]`` of the ledger database on ``server`` (default
        the ledger's server; after a failover, the server that is primary now: backups are
        taken of the primary).

        Azure SQL restores to any second from ``earliestRestoreDate`` (set by the retention,
        1-35 days, 7 by default) up to now. ``earliest`` is rounded up to a whole second (the
        restore takes whole seconds). In a dry run nothing is asked: ``earliest`` is None and
        ``would_run`` is the command that would ask."""
        source = server or self.ledger_server
        argv = self.window_command(server=source)
        now = self._clock()
        base = {
            "database": self.database,
            "server": source,
            "latest": _z(now),
        }
        if self.dry_run:
            return {**base, "earliest": None, "would_run": shlex.join(argv)}
        result = self._exec(argv, results=[])
        text = result["stdout"].strip()
        if not text:
            raise OpsbookError(
                f"Azure reports no restore point for {self.database} on {source}",
                hint="a new database has none until its first full backup (minutes after "
                "creation); check `az sql db show` and the backup retention policy",
            )
        try:
            earliest = datetime.fromisoformat(text)
        except ValueError:
            raise OpsbookError(
                f"`{shlex.join(argv)}` printed {text[:80]!r}, not a time",
                hint="run it by hand and check the az version (azure-cli 2.x)",
            ) from None
        if earliest.tzinfo is None:  # ARM times are UTC
            earliest = earliest.replace(tzinfo=UTC)
        if earliest.microsecond:
            earliest = earliest.replace(microsecond=0) + timedelta(seconds=1)
        return {
            **base,
            "earliest": _z(earliest),
            "retention_days_observed": round((now - earliest).total_seconds() / 86400, 2),
            "source": shlex.join(argv),
        }

    def check_target(self, *, target_time: datetime, server: str | None = None) -> dict[str, Any]:
        """Refuse (UsageError, field ``--to``) a target outside ``[earliest, now]``; the window.

        A target in the future is refused without asking Azure; otherwise (unless a dry run)
        the earliest restore point is read first. Nothing that changes anything runs before."""
        if target_time.tzinfo is None:
            raise UsageError(
                "the target time has no time zone",
                field="--to",
                hint="give it with a zone, e.g. 2026-12-04T03:15:00Z",
            )
        target_time = target_time.replace(microsecond=0)  # the restore takes whole seconds
        now = self._clock()
        if target_time > now:
            raise UsageError(
                f"the target {_z(target_time)} is in the future (now is {_z(now)})",
                field="--to",
                hint="a point-in-time restore goes back: give a time before now",
            )
        window = self.restore_window(server=server)
        earliest = window.get("earliest")
        if earliest and target_time < datetime.fromisoformat(earliest):
            raise UsageError(
                f"the target {_z(target_time)} is before the earliest restore point {earliest} "
                f"of {self.database} on {window['server']}",
                field="--to",
                hint=f"choose a time between {earliest} and {window['latest']}; older data is "
                "only in long-term retention backups (`az sql db ltr-backup list`)",
            )
        return window

    def default_name(self, *, target_time: datetime) -> str:
        return f"{self.database}-pitr-{target_time.astimezone(UTC):%Y%m%d%H%M}"

    def _check_name(self, name: str) -> str:
        if (
            not name
            or len(name) > 128
            or _BAD_NAME.search(name)
            or name.endswith((".", " "))
            or name.startswith("-")
        ):
            raise UsageError(
                f"{name!r} is not a valid Azure SQL database name",
                field="--new-name",
                hint="1-128 characters, none of <>*%&:\\/? , not ending in '.' or ' '",
            )
        if name.lower() == self.database.lower():
            raise UsageError(
                f"a restore cannot overwrite {self.database}: it goes into a new database",
                field="--new-name",
                hint="leave --new-name out for "
                f"{self.database}-pitr-YYYYmmddHHMM, or name another database",
            )
        return name

    def restore_plan(
        self, *, target_time: datetime, new_name: str | None = None, server: str | None = None
    ) -> list[list[str]]:
        """The commands of a point-in-time restore of the ledger into ``new_name`` (default
        ``<db>-pitr-<YYYYmmddHHMM>`` of the target) on ``server`` (default the ledger's
        server; after a failover pass the server that is primary now,
        ``failover_status()["primary_server"]``).

        The target is checked against the restore window first (:meth:`check_target`); the
        plan is then the restore (az waits for it to finish; the new database lands on the same
        server) and the check that the new database is ``Online``."""
        source = server or self.ledger_server
        self.check_target(target_time=target_time, server=source)
        new = self._check_name(new_name or self.default_name(target_time=target_time))
        restore = [
            *self._cmd("sql", "db", "restore", server=source, name=self.database),
            "--dest-name",
            new,
            "--time",
            _z(target_time),
            "--subscription",
            self.subscription,
        ]
        return [restore, self._show_db(name=new, query="status", server=source)]

    # -- failover groups -------------------------------------------------------------------

    def failover_plan(self, *, allow_data_loss: bool = False) -> list[list[str]]:
        """Make the DR server primary: set-primary against the DR (secondary) server, then the
        check that it reads ``Primary``.

        Without ``allow_data_loss`` it is a planned failover (full sync first, no loss, fails
        if the primary is unreachable); with it, a forced failover that may lose the
        transactions not yet replicated (the primary region is down)."""
        fog = self.failover_group
        switch = [
            *self._cmd("sql", "failover-group", "set-primary", server=self.dr_server, name=fog),
            *(["--allow-data-loss"] if allow_data_loss else []),
            "--subscription",
            self.subscription,
        ]
        return [switch, self._show_fog(server=self.dr_server)]

    def failback_plan(self) -> list[list[str]]:
        """Make the original primary server primary again (a planned failover back, no loss),
        then the check that it reads ``Primary``."""
        fog = self.failover_group
        switch = [
            *self._cmd(
                "sql", "failover-group", "set-primary", server=self.primary_server, name=fog
            ),
            "--subscription",
            self.subscription,
        ]
        return [switch, self._show_fog(server=self.primary_server)]

    def status_command(self) -> list[str]:
        return [
            *self._cmd(
                "sql", "failover-group", "show", server=self.dr_server, name=self.failover_group
            ),
            "--subscription",
            self.subscription,
            "-o",
            "json",
        ]

    def failover_status(self) -> dict[str, Any]:
        """Which server is primary now, as the failover group on the DR server reports it
        (``az sql failover-group show``: ``replicationRole``, ``replicationState``,
        ``partnerServers``, ``readWriteEndpoint``). Read before a failover or failback is
        approved; the DR side is asked because in a disaster it is the side that answers."""
        argv = self.status_command()
        if self.dry_run:
            return {"would_run": shlex.join(argv)}
        out = self._exec(argv, results=[])["stdout"]
        try:
            fog = json.loads(out or "{}")
        except json.JSONDecodeError:
            raise OpsbookError(
                f"`{shlex.join(argv)}` did not print JSON: {out[:120]!r}",
                hint="run it by hand; check `az config get core.output`",
            ) from None
        dr_role = fog.get("replicationRole")
        partners = [
            {
                "server": str(p.get("id", "")).rsplit("/", 1)[-1],
                "location": p.get("location"),
                "role": p.get("replicationRole"),
            }
            for p in fog.get("partnerServers") or []
            if isinstance(p, dict)
        ]
        roles = {self.dr_server: dr_role, **{p["server"]: p["role"] for p in partners}}
        endpoint = fog.get("readWriteEndpoint") or {}
        return {
            "failover_group": self.failover_group,
            "queried_server": self.dr_server,
            "primary_server": next((s for s, r in roles.items() if r == "Primary"), None),
            "roles": roles,
            "replication_state": fog.get("replicationState"),
            "failover_policy": endpoint.get("failoverPolicy"),
            "grace_period_minutes": endpoint.get("failoverWithDataLossGracePeriodMinutes"),
            "databases": [str(d).rsplit("/", 1)[-1] for d in fog.get("databases") or []],
            "source": shlex.join(argv),
        }

    def replication_command(self) -> list[str]:
        return [
            *self._cmd(
                "sql", "db", "replica", "list-links", server=self.ledger_server, name=self.database
            ),
            "--subscription",
            self.subscription,
            "-o",
            "json",
        ]

    def replication_lag(self) -> dict[str, Any]:
        """The geo-replication link of the ledger to the DR server.

        Source: ``az sql db replica list-links`` (ARM's Replication Links - List By Database:
        ``role``, ``partnerRole``, ``partnerServer``, ``replicationMode``, ``replicationState``,
        ``percentComplete``). ARM has no seconds-behind figure: ``lag_seconds`` is None and
        ``lag_seconds_query`` is the T-SQL (``sys.dm_geo_replication_link_status``) that gives
        it on the primary database. ``healthy`` is ``replicationState == CATCH_UP``."""
        argv = self.replication_command()
        if self.dry_run:
            return {"would_run": shlex.join(argv), "lag_seconds_query": LAG_SECONDS_QUERY}
        out = self._exec(argv, results=[])["stdout"]
        try:
            links = json.loads(out or "[]")
        except json.JSONDecodeError:
            raise OpsbookError(
                f"`{shlex.join(argv)}` did not print JSON: {out[:120]!r}",
                hint="run it by hand; check `az config get core.output`",
            ) from None
        dr = self.dr_server
        link = next(
            (x for x in links if isinstance(x, dict) and x.get("partnerServer") == dr),
            None,
        )
        base = {
            "database": self.database,
            "server": self.ledger_server,
            "partner_server": dr,
            "lag_seconds": None,
            "lag_seconds_query": LAG_SECONDS_QUERY,
            "source": shlex.join(argv),
        }
        if link is None:
            return {
                **base,
                "replication_state": None,
                "healthy": False,
                "reason": f"no replication link from {self.database} to {dr}",
            }
        state = link.get("replicationState")
        return {
            **base,
            "role": link.get("role"),
            "partner_role": link.get("partnerRole"),
            "partner_location": link.get("partnerLocation"),
            "replication_mode": link.get("replicationMode"),
            "replication_state": state,
            "percent_complete": link.get("percentComplete"),
            "healthy": state == "CATCH_UP",
        }

    # -- running ---------------------------------------------------------------------------

    def _exec(self, argv: list[str], *, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Run one command (no shell, bounded); its result, appended to ``results``. A failure
        raises :class:`AzCommandFailed` carrying ``results``."""
        exe = shutil.which(argv[0])
        if exe is None:
            raise OpsbookError(
                f"{argv[0]} is not installed or not on PATH",
                hint="install the Azure CLI (azure-cli 2.x) and sign in: az login",
            )
        line = shlex.join(argv)
        started = time.perf_counter()
        try:
            proc = subprocess.run(  # an argv list, never a shell
                [exe, *argv[1:]],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            results.append(
                {
                    "argv": argv,
                    "exit": None,
                    "stdout": "",
                    "stderr": "",
                    "took_s": round(time.perf_counter() - started, 3),
                }
            )
            raise AzCommandFailed(
                f"`{line}` did not finish within {self.timeout:g}s",
                hint="the operation may still be running in Azure: check "
                "`az sql db op list` / the portal's activity log before retrying",
                retryable=True,
                results=results,
            ) from None
        result = {
            "argv": argv,
            "exit": proc.returncode,
            "stdout": proc.stdout,
            "stderr": proc.stderr,
            "took_s": round(time.perf_counter() - started, 3),
        }
        results.append(result)
        if proc.returncode != 0:
            raise AzCommandFailed(
                f"`{line}` failed (exit {proc.returncode}): {proc.stderr.strip()[-1000:]}",
                hint="check `az account show` (signed in, right tenant) and the names in "
                f"{self.env_file}",
                results=results,
            )
        want = expected_output(argv)
        if want is not None and proc.stdout.strip() != want:
            raise AzCommandFailed(
                f"`{line}` reads {proc.stdout.strip()!r}, expected {want!r}",
                hint="the operation has not completed: check again with the same command",
                retryable=True,
                results=results,
            )
        return result

    def run(
        self,
        plan: Sequence[Sequence[str]],
        *,
        db: Database | None = None,
        actor: str | None = None,
        execution_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Run each command of ``plan`` in order; per command ``{argv, exit, stdout, stderr,
        took_s}``. Stops at the first failure with :class:`AzCommandFailed` (it names the command
        and az's stderr, and carries the results so far).

        With ``dry_run`` nothing runs: ``[{"argv": ..., "command": ..., "dry_run": True}]``.
        With ``db`` (and ``actor``) the run is audited: one record, ``backup.azuresql.ran`` or
        ``backup.azuresql.failed``, naming every command and its exit code."""
        commands = [list(argv) for argv in plan]
        for argv in commands:
            if not argv or argv[0] != self.az:
                raise UsageError(
                    f"not an az command: {shlex.join(argv)!r}",
                    hint="run only plans made by this class",
                )
        if self.dry_run:
            return [{"argv": a, "command": shlex.join(a), "dry_run": True} for a in commands]
        results: list[dict[str, Any]] = []
        failed: OpsbookError | None = None
        try:
            for argv in commands:
                self._exec(argv, results=results)
        except OpsbookError as exc:
            failed = exc
            raise
        finally:
            if db is not None:
                self._audit(db=db, actor=actor, results=results, failed=failed, eid=execution_id)
        return results

    def _audit(
        self,
        *,
        db: Database,
        actor: str | None,
        results: list[dict[str, Any]],
        failed: OpsbookError | None,
        eid: str | None,
    ) -> None:
        from opsbook import audit  # noqa: PLC0415

        audit.record(
            db=db,
            actor=actor or "operator",
            action="backup.azuresql.failed" if failed else "backup.azuresql.ran",
            subject=f"azuresql:{self.ledger_server}/{self.database}",
            payload={
                "commands": [
                    {"command": shlex.join(r["argv"]), "exit": r["exit"], "took_s": r["took_s"]}
                    for r in results
                ],
                "error": failed.message if failed else None,
            },
            execution_id=eid,
        )

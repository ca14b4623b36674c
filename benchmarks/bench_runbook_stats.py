"""Runbook metrics over 100,000 executions (issue 15).

Goal: `opsbook runbooks stats` (every runbook and procedure of the banking workspace, the
default 90-day window) computed in <= 1 s over 100,000 generated executions (~400,000 step
runs, ~110,000 journal events, 2,000 incidents, 20,000 ratings), written with executemany into
a fresh workspace database. Baseline in the same run: the same numbers computed naively in
Python from every row (`SELECT *` of each table, loops and sorts); the two must agree, which
checks the SQL too. One JSON line for the service call and one for the whole command line
(`opsbook runbooks stats --json` in a subprocess: Python start-up, the catalogue and the
quality signals included); both must be <= 1 s. Exits 1 if a goal is missed or the numbers
disagree.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import OPSBOOK, report

N_EXECUTIONS = int(os.environ.get("BENCH_EXECUTIONS", "100000"))
GOAL_S = 1.0
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def generate(db: Any, refs: list[tuple[str, str]], n: int, seed: int = 15) -> None:
    """``n`` executions over 120 days before NOW with their step runs, journal events,
    incidents and feedback: plain rows, executemany, one transaction per table."""
    rnd = random.Random(seed)
    execs, steps, events, links, feedback = [], [], [], [], []
    # rows are written in the order runs start, as a real journal writes them
    starts = sorted(NOW - timedelta(seconds=rnd.uniform(0, 120 * 86400)) for _ in range(n))
    for i, start in enumerate(starts):
        rb, proc = refs[rnd.randrange(len(refs))]
        roll = rnd.random()
        state = (
            "succeeded"
            if roll < 0.80
            else "failed"
            if roll < 0.92
            else "aborted"
            if roll < 0.97
            else "waiting"
        )
        dur = rnd.lognormvariate(4, 0.8)
        fin = iso(start + timedelta(seconds=dur)) if state != "waiting" else None
        eid = f"x{i:07d}"
        dry = 1 if rnd.random() < 0.02 else 0
        execs.append(
            (
                eid,
                rb,
                f"runbooks/{rb}.md",
                "h",
                proc,
                "sandbox" if i % 3 else "staging",
                "{}",
                "d",
                state,
                state,
                None,
                0,
                dry,
                "alice",
                None,
                iso(start),
                fin or iso(start),
                fin,
            )
        )
        passed = rnd.random() < 0.03
        for seq in range(4):
            sstate = "succeeded"
            if (state == "failed" and seq == 3) or (passed and seq == 1):
                sstate = "failed"
            elif rnd.random() < 0.02:
                sstate = "skipped"
            if state == "waiting" and seq == 3:
                sstate = "waiting"
            kind = "manual" if seq == 2 else "sh"
            at = iso(start + timedelta(seconds=seq * dur / 4))
            steps.append((eid, seq, f"step-{seq}", seq, kind, sstate, sstate, 1, at, at, 1.0))
        events.append((iso(start), "alice", "execution.created", f"execution:{eid}", eid, "{}"))
        if rnd.random() < 0.1:
            note = "ticket CHG-1" if rnd.random() < 0.3 else None
            payload = json.dumps(
                {"items": ["x"], "note": note, "seq": 2, "step": "step-2"},
                sort_keys=True,
                separators=(",", ":"),
            )
            events.append(
                (iso(start), "alice", "execution.step.attested", f"execution:{eid}", eid, payload)
            )
        if rnd.random() < 0.2 and state != "waiting":
            feedback.append(
                (eid, "alice", rnd.randint(1, 5), "ok" if rnd.random() < 0.2 else None, iso(start))
            )
    incidents = []
    for k in range(1, 2001):
        det = NOW - timedelta(seconds=rnd.uniform(0, 120 * 86400))
        res = det + timedelta(seconds=rnd.uniform(600, 20000))
        incidents.append(
            (
                k,
                f"inc {k}",
                "service",
                "[]",
                "SEV3",
                "resolved",
                "alice",
                iso(det),
                iso(det),
                iso(res),
                iso(res),
                1 if k % 10 == 0 else 0,
            )
        )
        for j in rnd.sample(range(n), 2):
            links.append((k, f"x{j:07d}", "ref", "alice", iso(det)))
    cur = db.raw.cursor()
    cur.execute("BEGIN")
    cur.executemany(
        "INSERT INTO executions (id, runbook_id, runbook_path, runbook_hash, procedure_id,"
        " environment, params, digest, state, state_name, reason, cursor, dry_run, started_by,"
        " owner, created_at, updated_at, finished_at) VALUES"
        " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        execs,
    )
    cur.executemany(
        "INSERT INTO step_runs (execution_id, seq, step_id, step_index, kind, state, state_name,"
        " attempts, started_at, finished_at, duration) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        steps,
    )
    cur.executemany(
        "INSERT INTO events (ts, actor, action, subject, execution_id, payload, payload_digest,"
        " prev_hash, hash) VALUES (?,?,?,?,?,?,'','','')",
        events,
    )
    cur.executemany(
        "INSERT INTO incidents (id, title, type, services, severity, status, created_by,"
        " detected_at, declared_at, resolved_at, updated_at, drill)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        incidents,
    )
    cur.executemany(
        "INSERT INTO incident_executions (incident_id, execution_id, ref, started_by, ts)"
        " VALUES (?,?,?,?,?)",
        links,
    )
    cur.executemany(
        "INSERT INTO runbook_feedback (execution_id, person, rating, comment, created_at,"
        " updated_at) VALUES (?,?,?,?,?,?)",
        [(*f, f[-1]) for f in feedback],
    )
    cur.execute("COMMIT")


def _secs(a: str, b: str) -> float:
    def p(t: str) -> datetime:
        return datetime.fromisoformat(t.replace("Z", "+00:00"))

    return (p(b) - p(a)).total_seconds()


def _median(vs: list[float]) -> float | None:
    return round(statistics.median(vs), 3) if vs else None


def _p90(vs: list[float]) -> float | None:
    if not vs:
        return None
    s = sorted(vs)
    return round(s[math.ceil(0.9 * len(s)) - 1], 3)


def naive(db: Any, since: str, until: str) -> dict[str, dict[str, Any]]:
    """The same per-procedure numbers from every row, in Python."""
    execs = {r["id"]: r for r in db.query("SELECT * FROM executions")}
    steps = db.query("SELECT * FROM step_runs")
    events = db.query("SELECT * FROM events")
    inc = {r["id"]: r for r in db.query("SELECT * FROM incidents")}
    links = db.query("SELECT * FROM incident_executions")
    fbs = db.query("SELECT * FROM runbook_feedback")
    win = {k: e for k, e in execs.items() if not e["dry_run"] and since <= e["created_at"] < until}
    out: dict[str, dict[str, Any]] = {}

    def slot(e: dict[str, Any]) -> dict[str, Any]:
        return out.setdefault(
            f"{e['runbook_id']}#{e['procedure_id']}",
            {
                "runs": 0,
                "succeeded": 0,
                "finished": 0,
                "aborted": 0,
                "d": [],
                "steps": {},
                "notes": 0,
                "passed": 0,
                "inc": set(),
                "ttr": {},
                "fb": [],
            },
        )

    for e in win.values():
        s = slot(e)
        s["runs"] += 1
        s["succeeded"] += e["state"] == "succeeded"
        s["aborted"] += e["state"] == "aborted"
        s["finished"] += e["state"] in ("succeeded", "failed", "aborted")
        if e["finished_at"] and e["state"] in ("succeeded", "failed"):
            s["d"].append(_secs(e["created_at"], e["finished_at"]))
    last_seq: dict[str, int] = {}
    for r in steps:
        last_seq[r["execution_id"]] = max(last_seq.get(r["execution_id"], -1), r["seq"])
    for r in steps:
        e = win.get(r["execution_id"])
        if e and r["state"] in ("failed", "skipped"):
            s = slot(e)
            c = s["steps"].setdefault(r["step_id"], [0, 0])
            c[0 if r["state"] == "failed" else 1] += 1
            if r["state"] == "failed" and last_seq[r["execution_id"]] > r["seq"]:
                s["passed"] += 1
    for v in events:
        e = win.get(v["execution_id"])
        if (
            e
            and v["action"] == "execution.step.attested"
            and v["ts"] >= since
            and json.loads(v["payload"]).get("note") is not None
        ):
            slot(e)["notes"] += 1
    resolved = {
        k
        for k, i in inc.items()
        if not i["drill"] and i["resolved_at"] and since <= i["resolved_at"] < until
    }
    for lk in links:
        e = execs.get(lk["execution_id"])
        if e and lk["incident_id"] in resolved:
            i = inc[lk["incident_id"]]
            s = slot(e)
            s["inc"].add(i["id"])
            s["ttr"][i["id"]] = _secs(i["detected_at"], i["resolved_at"])
    for f in fbs:
        e = win.get(f["execution_id"])
        if e:
            slot(e)["fb"].append(f["rating"])
    result = {}
    for ref, s in out.items():
        top = sorted(s["steps"].items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))[:5]
        result[ref] = {
            "runs": s["runs"],
            "succeeded": s["succeeded"],
            "finished": s["finished"],
            "median": _median(s["d"]),
            "p90": _p90(s["d"]),
            "steps": [[k, v[0], v[1]] for k, v in top],
            "deviations": s["notes"] + s["aborted"] + s["passed"],
            "incidents": len(s["inc"]),
            "ttr": _median(list(s["ttr"].values())),
            "feedback": (len(s["fb"]), round(sum(s["fb"]) / len(s["fb"]), 2) if s["fb"] else None),
        }
    return result


def from_sql(stats: Any) -> dict[str, dict[str, Any]]:
    return {
        p.ref: {
            "runs": p.runs,
            "succeeded": p.succeeded,
            "finished": p.finished,
            "median": p.duration_median,
            "p90": p.duration_p90,
            "steps": [[s.step, s.failed, s.skipped] for s in p.steps],
            "deviations": p.deviations,
            "incidents": p.incidents,
            "ttr": p.ttr_median,
            "feedback": (p.feedback.count, p.feedback.mean),
        }
        for p in stats.procedures()
        if p.runs or p.incidents
    }


def _close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal, but durations within 1 ms (SQLite's julianday is a float of days)."""
    for k, x in a.items():
        y = b[k]
        if k in ("median", "p90", "ttr") and x is not None and y is not None:
            if abs(x - y) > 0.002:
                return False
        elif x != y:
            return False
    return True


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from opsbook.db import open_database
    from opsbook.lifecycle.metrics import iso as iso_
    from opsbook.lifecycle.metrics import runbook_stats
    from opsbook.runbooks.catalogue import load_catalogue
    from opsbook.workspace import Workspace
    from opsbook.workspace.init import init_workspace

    with tempfile.TemporaryDirectory(prefix="bench-runbook-stats-") as tmp:
        root = Path(tmp) / "ws"
        init_workspace(target=root)
        ws = Workspace.load(root)
        cat = load_catalogue(ws.runbooks_dir)
        refs = [(rb.id, p.id) for rb in cat.runbooks for p in rb.procedures]
        db = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
        t0 = time.perf_counter()
        generate(db, refs, N_EXECUTIONS)
        gen_s = time.perf_counter() - t0
        db.raw.execute("ANALYZE")
        since, until = NOW - timedelta(days=90), NOW

        def sql() -> Any:
            return runbook_stats(db, catalogue=cat, since=since, until=until, now=NOW)

        sql()  # warm the page cache, as a second `stats` would find it
        times = []
        for _ in range(3):
            t = time.perf_counter()
            got = sql()
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        base = naive(db, iso_(since), iso_(until))
        base_s = time.perf_counter() - t
        mine = from_sql(got)
        agree = set(mine) == set(base) and all(_close(mine[k], base[k]) for k in base)
        if not agree:
            for k in sorted(set(mine) | set(base)):
                if k not in mine or k not in base or not _close(mine[k], base[k]):
                    print(json.dumps({"ref": k, "sql": mine.get(k), "naive": base.get(k)}))
                    break
        db.close()
        env = {**os.environ, "OPSBOOK_WORKSPACE": str(root)}
        cli = []
        for _ in range(3):
            t = time.perf_counter()
            proc = subprocess.run(
                [*OPSBOOK, "runbooks", "stats", "--json"],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            cli.append(time.perf_counter() - t)
            assert proc.returncode == 0, proc.stderr
    best = statistics.median(times)
    code = report(
        "runbook_stats",
        best <= GOAL_S and agree,
        executions=N_EXECUTIONS,
        procedures=len(mine),
        stats_s=round(best, 3),
        goal_s=GOAL_S,
        naive_python_s=round(base_s, 3),
        speedup_vs_naive=round(base_s / best, 1) if best else None,
        numbers_agree=agree,
        generate_s=round(gen_s, 1),
    )
    wall = statistics.median(cli)
    code |= report(
        "runbook_stats_cli",
        wall <= GOAL_S,
        executions=N_EXECUTIONS,
        wall_s=round(wall, 3),
        goal_s=GOAL_S,
        note="`opsbook runbooks stats --json` in a subprocess, Python start-up included",
    )
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Redaction on the hot path: every step's output passes through it.

Goals: 1 MB of step output (log lines, hex, base64) redacted in <= 50 ms with 20 secrets
registered, and the redactor compiled for 20 secrets in <= 500 ms (the CLI does it once per
`opsbook run`). Baseline in the same run: one pass of Python's ``re`` with a single literal
(the old redactor with one secret), which is the cheapest a redactor can be.
"""

from __future__ import annotations

import base64
import re
import secrets
import sys
from functools import partial

from _common import median, report, timed_fn

from opsbook.engine.redaction import Redactor

SECRETS = 20
GOAL_MS_PER_MB = 50.0
GOAL_COMPILE_MS = 500.0


def texts() -> dict[str, str]:
    line = "2026-12-03T07:26:45Z INFO request id={} path=/api/v1/x status=200 took=12ms\n"
    return {
        "log": "".join(line.format(secrets.token_hex(8)) for _ in range(12_000)),
        "hex": secrets.token_hex(500_000),
        "base64": base64.b64encode(secrets.token_bytes(750_000)).decode(),
    }


def main() -> int:
    values = [secrets.token_urlsafe(18) for _ in range(SECRETS)]
    compile_s = median(timed_fn(lambda: Redactor(values), repeat=3))
    redactor = Redactor(values)
    literal = re.compile(re.escape(values[0]))
    ms_per_mb: dict[str, float] = {}
    baseline: dict[str, float] = {}
    for name, text in texts().items():
        mb = len(text.encode()) / 1e6
        ms_per_mb[name] = round(median(timed_fn(partial(redactor.redact, text))) * 1e3 / mb, 2)
        baseline[name] = round(median(timed_fn(partial(literal.sub, "***", text))) * 1e3 / mb, 2)
    # A check that the work is real: a secret in the text is masked.
    assert redactor.redact(f"a {values[3]} b") == "a *** b"
    worst = max(ms_per_mb.values())
    return report(
        "redaction",
        worst <= GOAL_MS_PER_MB and compile_s * 1e3 <= GOAL_COMPILE_MS,
        secrets=SECRETS,
        ms_per_mb=ms_per_mb,
        baseline_one_literal_ms_per_mb=baseline,
        compile_ms=round(compile_s * 1e3, 1),
        goal_ms_per_mb=GOAL_MS_PER_MB,
        goal_compile_ms=GOAL_COMPILE_MS,
    )


if __name__ == "__main__":
    sys.exit(main())

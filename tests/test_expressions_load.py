"""The CEL extension is loaded once even when threads ask for it together (a second load
panicked in pyo3 with SetLoggerError, failing every thread's expression)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import threading
from opsbook import expressions

barrier = threading.Barrier(8)
errors = []

def work(i):
    barrier.wait()
    try:
        expressions.evaluate(f"x == {i}", {"x": i})
    except BaseException as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("errors", len(errors), errors[:1])
"""


def test_threads_loading_cel_together_all_get_it() -> None:
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "errors 0 []" in done.stdout, done.stdout + done.stderr[-2000:]
        assert "SetLoggerError" not in done.stderr

"""HTML reports to PDF with a headless Chromium (Debian's `chromium`; `OPSBOOK_CHROMIUM` names
another binary). Reports stay HTML underneath: the PDF is the same page, printed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from opsbook.errors import OpsbookError, UsageError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT = 60.0


def find_chromium() -> str:
    """The browser binary to print with, or a UsageError that says how to get one."""
    named = os.environ.get("OPSBOOK_CHROMIUM")
    if named:
        if shutil.which(named) is None and not Path(named).is_file():
            raise UsageError(
                f"OPSBOOK_CHROMIUM={named!r} is not an executable",
                hint="point it at a Chromium or Chrome binary, or unset it",
            )
        return named
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise UsageError(
        "--format pdf needs a headless Chromium and none was found",
        hint="apt-get install chromium (or set OPSBOOK_CHROMIUM), or use --format html and "
        "print it from a browser",
    )


def html_to_pdf(html: str, out: Path) -> Path:
    """Print ``html`` to ``out`` (a PDF file) and return it."""
    browser = find_chromium()
    with tempfile.TemporaryDirectory(prefix="opsbook-pdf-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        target = out.resolve()
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={Path(tmp) / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={target}",
            page.as_uri(),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise OpsbookError(
                f"the browser did not print the report within {TIMEOUT:g}s",
                hint="try --format html",
            ) from exc
        if done.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise OpsbookError(
                f"the browser could not print the report (exit {done.returncode}): "
                + " / ".join(tail),
                hint="try --format html",
            )
    return target

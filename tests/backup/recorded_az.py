"""A fake ``az`` that replays recordings (``recordings_az/commands.json``) and logs every argv it
gets. The tests install it first on PATH as ``az``; Azure cannot be reached from here."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

RECORDINGS = Path(__file__).parent / "recordings_az"


def main(argv: list[str]) -> int:
    line = shlex.join(argv)
    with open(os.environ["OPSBOOK_RECORDED_CALLS"], "a", encoding="utf-8") as calls:
        calls.write(json.dumps(argv) + "\n")
    commands = json.loads((RECORDINGS / "commands.json").read_text(encoding="utf-8"))["commands"]
    answer = commands.get(line)
    if answer is None:
        sys.stderr.write(f"no recording for: {line}\n")
        return 97
    if "sleep_s" in answer:  # an operation that outlasts the caller's timeout
        time.sleep(float(answer["sleep_s"]))
    if "stdout_file" in answer:
        sys.stdout.write((RECORDINGS / answer["stdout_file"]).read_text(encoding="utf-8"))
    else:
        sys.stdout.write(answer.get("stdout", ""))
    sys.stderr.write(answer.get("stderr", ""))
    return int(answer.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main([Path(sys.argv[1]).name, *sys.argv[2:]]))

#!/usr/bin/env bash
# `make demo`: create a demo workspace and run a procedure end to end on the embedded default
# (SQLite state, local sandbox). Safe to run again: the workspace is recreated each time.
set -euo pipefail
ws="${1:-demo-workspace}"
ob() { .venv/bin/opsbook --workspace "$ws" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$ws"
say "opsbook init $ws"
.venv/bin/opsbook init "$ws"

say "opsbook lint (documentation standards)"
ob lint || true

say "opsbook runbooks list"
ob runbooks list

say "opsbook run demo#smoke-test --env sandbox  (non-interactive: parks at the manual step)"
set +e
ob run demo#smoke-test --env sandbox --param service=payment
code=$?
set -e
echo "exit code $code (3 = parked, waiting for a person)"
id=$(ob executions list --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

say "opsbook executions confirm $id --as ops-lead  (a person attests the checklist)"
ob executions confirm "$id" --as ops-lead --note "DEMO-1"

say "opsbook executions show $id"
ob executions show "$id"

say "opsbook audit verify"
ob audit verify

say "opsbook audit export --out $ws/evidence"
ob audit export --out "$ws/evidence"

printf '\nDone. Explore with: .venv/bin/opsbook --workspace %s --help\n' "$ws"

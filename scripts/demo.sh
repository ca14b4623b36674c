#!/usr/bin/env bash
# `make demo`: on the embedded default (SQLite state + the local sandbox banking platform):
# create a workspace, bring the sandbox up, run procedures against it (a health check, an
# injected outage diagnosed (opsbook diagnose) and fixed by the troubleshooting runbook, a four-eyes approval, live
# output and a retried step),
# prove what happened from the audit trail, check the console answers, and stop everything.
# Safe to run again: the workspace is recreated each time. `make console` keeps it running.
set -euo pipefail
ws="${1:-demo-workspace}"
ob() { .venv/bin/opsbook --workspace "$ws" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# the newest run started by a person (a decision tree's fixing procedure runs as its child)
last_id() { ob executions list --json | .venv/bin/python -c 'import json,sys; print(next(e["id"] for e in json.load(sys.stdin) if not e["parent_id"]))'; }
parked() {  # run a procedure that stops at a manual step; exit code 3 means "parked"
  set +e; ob "$@"; local code=$?; set -e
  if [ "$code" -ne 3 ] && [ "$code" -ne 0 ]; then echo "unexpected exit code $code" >&2; exit 1; fi
  echo "(exit code $code: 3 = parked, waiting for a person)"
}
confirm() {  # a person attests each manual step the run stops at, until it finishes
  local id=$1 user=$2 note=$3 code
  for _ in 1 2 3 4 5; do
    set +e; ob executions confirm "$id" --as "$user" --note "$note"; code=$?; set -e
    [ "$code" -eq 3 ] || return "$code"
  done
}
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -z "${KEEP:-}" ] && [ -d "$ws/.opsbook" ]; then ob sandbox down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

if [ -d "$ws/.opsbook" ]; then ob sandbox down >/dev/null 2>&1 || true; fi
rm -rf "$ws"
say "opsbook init $ws"
.venv/bin/opsbook init "$ws"

say "opsbook lint  (format and the documentation standards)"
ob lint || true

say "opsbook runbooks list"
ob runbooks list

say "opsbook sandbox up  (four banking services, a payment network, a ledger database)"
ob sandbox up
ob sandbox status

say "opsbook run system-monitoring#morning-health-check --env sandbox"
parked run system-monitoring#morning-health-check --env sandbox --as ops-engineer
id=$(last_id)
say "opsbook executions confirm $id --as ops-engineer  (the operator signs off the checklist)"
confirm "$id" ops-engineer "morning check, all green"
say "opsbook monitor health-report --execution $id  (the report, stored with the run; first lines)"
ob monitor health-report --execution "$id" --env sandbox --out "$ws/morning-report.html" --format html >/dev/null
ob monitor health-report --execution "$id" --env sandbox --no-probes | head -20
echo "(HTML with charts: $ws/morning-report.html)"

say "opsbook monitor check --env sandbox  (every probe once: all green)"
ob monitor check --env sandbox

say "opsbook sandbox chaos inject crash --service payment  (an outage)"
ob sandbox chaos inject crash --service payment
set +e; ob monitor check --env sandbox; echo "(exit code $?: 1 = a probe failed)"; set -e

say "opsbook diagnose payment  (what is wrong, the evidence, and the procedure that fixes it)"
ob diagnose payment --env sandbox

say "opsbook incidents declare  (SEV2; \`opsbook serve\` also opens incidents from alerts and pages people)"
ob incidents declare "Payments failing" --service payment --severity SEV2 --no-page --as ops-engineer
ob incidents ack INC-1 --as ops-engineer
ob incidents suggest INC-1

say "opsbook incidents run INC-1 troubleshooting#service-connectivity  (its steps join the timeline)"
parked incidents run INC-1 troubleshooting#service-connectivity --env sandbox --param service=payment --as ops-engineer
id=$(last_id)
confirm "$id" ops-engineer "payment crashed; restarted by the runbook"
ob sandbox status
ob monitor check --env sandbox
ob incidents resolve INC-1 --as ops-engineer

say "opsbook incidents review INC-1  (the post-incident review draft, first lines)"
ob incidents review INC-1 | head -30

say "opsbook report sla --month $(date -u +%Y-%m)  (availability from the probe results)"
ob report sla --month "$(date -u +%Y-%m)" --env sandbox | head -12

say "Four eyes: ops-lead starts a high-risk change; ops-lead cannot approve it; dba can"
parked run demo#approval-demo --env sandbox --as ops-lead --yes
id=$(last_id)
set +e; ob executions confirm "$id" --as ops-lead --note "CHG-42"; set -e
set +e; ob approve "$id" --as ops-lead; echo "(refused, exit code $?: the starter cannot approve)"; set -e
ob approve "$id" --as dba --comment "reviewed CHG-42"
ob executions resume "$id" --as ops-lead

say "opsbook run demo#retry-demo  (a step's output as it is printed; a failing check retried, each attempt shown)"
parked run demo#retry-demo --env sandbox --as ops-engineer
confirm "$(last_id)" ops-engineer "DEMO-2"

say "opsbook training drill start payment-crash --trainee ops-engineer  (a graded drill: a fault and a drill incident)"
ob training drill start payment-crash --trainee ops-engineer
parked run troubleshooting#service-connectivity --env sandbox --param service=payment --as ops-engineer
confirm "$(last_id)" ops-engineer "drill: payment restarted by the runbook"
say "opsbook training drill end 1  (scored from the record: detect, mitigate, procedures, safety)"
set +e; ob training drill end 1; echo "(exit code $?: 0 = passed, 1 = not passed)"; set -e

say "opsbook security check  (PCI DSS-mapped checks: a card number written to a log turns the daily check red)"
ob sandbox chaos inject pan-in-log --service payment
set +e; ob security check --env sandbox --only data.pan-in-logs --only tls.protocols --only audit.chain; echo "(exit code $?: 1 = a failure at high or above)"; set -e
ob sandbox chaos clear pan-in-log
set +e; ob security check --env sandbox; echo "(exit code $?)"; set -e
ob findings list

say "opsbook compliance report --standard pci-dss-4.0.1  (evidence per requirement, a pack verified offline)"
quarter="$(date -u +%Y)-Q$(( ($(date -u +%-m) - 1) / 3 + 1 ))"
ob compliance report --standard pci-dss-4.0.1 --period "$quarter" --requirement 3.5.1 --requirement 4.2.1 --requirement 10.3.2 --out "$ws/compliance"
python3 "$ws/compliance/verify_compliance.py" "$ws/compliance"

say "opsbook backups take --verify  (the ledger backed up online, encrypted, copied to the DR location, restored and checked)"
ob backups take --env sandbox --verify
ob backups check --env sandbox

say "opsbook dr drill  (the DR region: the ledger's journal shipped to West US 2, a regional loss with load running, RPO and RTO measured, failback)"
set +e; ob dr drill --env sandbox --async --load 10; echo "(exit code $?: 1 when a target is missed)"; set -e
ob dr status --env sandbox

say "opsbook deploy payment 1.5.2 --strategy canary  (a release that fails payments, deployed with customer traffic running: the canary's analysis aborts it and returns all traffic, nobody acts)"
ob sandbox releases
ob releases calendar --days 3
# the demo runs at any hour: the shipped calendar's freezes (wire cut-off, month-end) are lifted
printf 'freezes: []\n' > "$ws/change_calendar.yaml"
parked run deployment-procedures#pre-deployment-checklist --env sandbox --param service=payment --param version=1.5.2 --as ops-lead --yes >/dev/null
confirm "$(last_id)" ops-lead "CHG-77" >/dev/null
ob sandbox load --env sandbox --rate 40 --duration 70 >/dev/null 2>&1 &
load_pid=$!
sleep 2
parked deploy payment 1.5.2 --strategy canary --ticket CHG-77 --reason "new fee schedule" --env sandbox --as ops-lead --yes
id=$(last_id)
ob approve "$id" --as dba --comment "CHG-77 reviewed"
set +e; ob executions resume "$id" --as ops-lead; echo "(exit code $?: 1 = the rollout was aborted by its analysis; payment still runs the old version)"; set -e
wait "$load_pid" 2>/dev/null || true
ob releases list
ob releases show "$(ob releases list --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["releases"][0]["id"])')"

say "opsbook executions list"
ob executions list

say "opsbook runbooks stats demo --since 1d  (how each procedure did: runs, success, durations, failing steps)"
ob runbooks stats demo --since 1d

say "opsbook audit verify  (the hash chain over every state change)"
ob audit verify

say "opsbook audit export --out $ws/evidence  (an evidence bundle an auditor can check offline)"
ob audit export --out "$ws/evidence"

say "opsbook serve  (REST API, console and /metrics; started briefly to show it answers)"
port=$(.venv/bin/python -c 'from opsbook.sandbox.config import free_port; print(free_port())')
# Not through the `ob` function: `$!` must be the server itself, so that it can be stopped.
.venv/bin/opsbook --workspace "$ws" serve --port "$port" >"$ws/.opsbook/serve-demo.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  if .venv/bin/python -c "import httpx,sys; sys.exit(0 if httpx.get('http://127.0.0.1:$port/api/v1/health', timeout=1).status_code < 500 else 1)" 2>/dev/null; then break; fi
  sleep 0.2
done
.venv/bin/python - "$port" <<'EOF'
import sys, httpx
base = f"http://127.0.0.1:{sys.argv[1]}"
for path in ("/api/v1/health", "/signin", "/api/v1/openapi.json", "/metrics"):
    r = httpx.get(base + path, timeout=5)
    print(f"  GET {path:<22} -> {r.status_code}")
EOF
password=$(sed -n 's/^ *password: *//p' "$ws/.opsbook/serve-demo.log" | head -1)
kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""

say "opsbook users add approver1  (a second account: approves what admin starts)"
ob users add approver1 --role operator --role approver --display-name "Second approver" \
  | tee "$ws/.opsbook/approver1.txt"
approver_password=$(sed -n 's/^one-time password: *//p' "$ws/.opsbook/approver1.txt" | head -1)

# A person at a terminal gets the console, with the sandbox still running, until Ctrl-C.
# Non-interactive runs (CI, scripts) stop here. DEMO_SERVE=1 or 0 forces either.
serve="${DEMO_SERVE:-auto}"
if [ "$serve" = auto ]; then serve=0; if [ -t 0 ] && [ -t 1 ]; then serve=1; fi; fi
if [ "$serve" = 1 ]; then
  port="${DEMO_PORT:-8080}"
  if ! .venv/bin/python -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $port))" 2>/dev/null; then
    port=$(.venv/bin/python -c 'from opsbook.sandbox.config import free_port; print(free_port())')
  fi
  say "The console: http://127.0.0.1:$port/"
  printf '  sign in as  admin / %s  (shown once; a new one: opsbook users passwd admin)\n' "$password"
  printf '  try: Runbooks -> system-monitoring -> Morning health check -> Run (env sandbox)\n'
  printf '  approve as  approver1 / %s  (admin cannot approve a run admin started)\n' "$approver_password"
  printf '  Ctrl-C stops the console and the sandbox.\n'
  set +e; ob serve --port "$port"; set -e
else
  printf '  admin password (one-time): %s\n' "$password"
fi

printf '\n\033[1mDone.\033[0m Explore: .venv/bin/opsbook --workspace %s --help\n' "$ws"
printf 'The console again, with the sandbox: make console  (sign in as admin; a new password:\n  .venv/bin/opsbook --workspace %s users passwd admin)\n' "$ws"

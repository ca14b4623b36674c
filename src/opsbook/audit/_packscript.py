"""``verify_chain.py``, the evidence pack's own verifier: standard library only.

It checks Ed25519 signatures with ``cryptography`` when the auditor has it installed and with a
pure-Python implementation of RFC 8032 §5.1.7 otherwise (slow, a few milliseconds a signature,
but a pack carries few). ``--pure`` forces the pure-Python path.
"""

VERIFY_SCRIPT = r'''#!/usr/bin/env python3
"""Check an opsbook evidence pack. Standard library only.

  python3 verify_chain.py [events.jsonl] [--pure]

1. checkpoints.jsonl: every line is a checkpoint signed with the key in audit-key.pub (Ed25519
   over "opsbook-audit-checkpoint-v1\n" + the line's canonical JSON without "sig");
2. events.jsonl: every line is a JSON record; each hash recomputes
   (hash = sha256("|".join([prev_hash, id, ts, actor, action, subject, execution_id or "",
   payload_digest])), payload_digest = sha256(payload)) and links to the one before;
3. the pack is whole: it starts at the first id the signed export checkpoint declares (record 1,
   prev_hash "", for a full-period pack), has as many records as it declares, and its last
   record is the one that checkpoint signed; every other checkpoint in range matches too.
Exit 0 when all hold, 1 otherwise, naming the file and line at fault.
Compare the key fingerprint printed with the one the operator publishes (opsbook audit verify).
"""
import hashlib
import json
import os
import sys

PREFIX = "opsbook-audit-checkpoint-v1\n"
EVENT_FIELDS = {"id": int, "ts": str, "actor": str, "action": str, "subject": str,
                "payload": str, "payload_digest": str, "prev_hash": str, "hash": str}
CP_FIELDS = ("v", "id", "hash", "signed_at", "signer", "key_id", "sig")

# -- Ed25519 verification (RFC 8032), pure Python ------------------------------------------
P = 2 ** 255 - 19
L = 2 ** 252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _x_from_y(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = P - x
    return x


def _add(a, b):
    e = (a[1] - a[0]) * (b[1] - b[0]) % P
    f = (a[1] + a[0]) * (b[1] + b[0]) % P
    g = 2 * a[3] * b[3] * D % P
    h = 2 * a[2] * b[2] % P
    e, f, g, h = f - e, h - g, h + g, f + e
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, pt):
    acc = (0, 1, 1, 0)
    while s:
        if s & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        s >>= 1
    return acc


def _decode(b):
    y = int.from_bytes(b, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _x_from_y(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


_GY = 4 * pow(5, P - 2, P) % P
_G = (_x_from_y(_GY, 0), _GY, 1, _x_from_y(_GY, 0) * _GY % P)


def ed25519_verify_pure(public, message, signature):
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decode(public), _decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    lhs, rhs = _mul(s, _G), _add(r, _mul(k, a))
    same_x = (lhs[0] * rhs[2] - rhs[0] * lhs[2]) % P == 0
    return same_x and (lhs[1] * rhs[2] - rhs[1] * lhs[2]) % P == 0


def make_verifier(pure):
    if not pure:
        try:
            from cryptography.exceptions import InvalidSignature
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        except ImportError:
            pass
        else:
            def verify(public, message, signature):
                try:
                    Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
                except (InvalidSignature, ValueError):
                    return False
                return True
            return verify, "cryptography"
    return ed25519_verify_pure, "pure-Python RFC 8032"


# -- the pack ------------------------------------------------------------------------------
def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)


def sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def read_lines(path):
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                yield n, line
    except FileNotFoundError:
        fail(f"{path}: missing from the pack")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot be read: {exc}")


def main(argv):
    pure = "--pure" in argv
    args = [a for a in argv if a != "--pure"]
    events = args[0] if args else "events.jsonl"
    base = os.path.dirname(events) or "."
    verify, how = make_verifier(pure)
    key_path = os.path.join(base, "audit-key.pub")
    try:
        with open(key_path, encoding="ascii") as fh:
            public = bytes.fromhex(fh.read().split()[0])
        if len(public) != 32:
            raise ValueError("not 32 bytes")
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        fail(f"{key_path}: not an Ed25519 public key in hex ({exc})")
    fingerprint = hashlib.sha256(public).hexdigest()[:16]

    cp_path = os.path.join(base, "checkpoints.jsonl")
    checkpoints, export = {}, None
    for n, line in read_lines(cp_path):
        if not line.strip():
            continue
        try:
            cp = json.loads(line)
        except ValueError:
            fail(f"{cp_path} line {n}: not JSON")
        if not isinstance(cp, dict) or any(f not in cp for f in CP_FIELDS):
            fail(f"{cp_path} line {n}: not a checkpoint (needs {', '.join(CP_FIELDS)})")
        if not isinstance(cp["id"], int) or not isinstance(cp["hash"], str):
            fail(f"{cp_path} line {n}: id must be an integer and hash a string")
        body = {k: v for k, v in cp.items() if k != "sig"}
        try:
            sig = bytes.fromhex(str(cp["sig"]))
        except ValueError:
            sig = b""
        if not verify(public, (PREFIX + canonical(body)).encode("utf-8"), sig):
            fail(f"{cp_path} line {n}: the signature does not verify with key {fingerprint}")
        if cp["signer"] == "export":
            export = cp
        elif cp["id"] > 0:
            checkpoints.setdefault(cp["id"], (n, cp["hash"]))
    if export is None:
        fail(f"{cp_path}: no signed export checkpoint: the pack's extent cannot be checked")
    first_id, declared = export.get("first_id"), export.get("records")
    if not isinstance(declared, int) or (declared and not isinstance(first_id, int)):
        fail(f"{cp_path}: the export checkpoint does not declare first_id and records")
    if export.get("full_period") and declared and first_id != 1:
        fail(f"{cp_path}: a full-period pack must start at record 1, not {first_id}")

    prev = expected = None
    count, last = 0, None
    for n, line in read_lines(events):
        where = f"{events} line {n}"
        try:
            r = json.loads(line)
        except ValueError:
            fail(f"{where}: not JSON")
        if not isinstance(r, dict):
            fail(f"{where}: not a JSON object")
        for name, kind in EVENT_FIELDS.items():
            if not isinstance(r.get(name), kind) or isinstance(r.get(name), bool):
                fail(f"{where}: field {name!r} is missing or not a {kind.__name__}")
        if not (r.get("execution_id") is None or isinstance(r["execution_id"], str)):
            fail(f"{where}: field 'execution_id' must be a string or null")
        if expected is None:
            if r["id"] != first_id:
                fail(f"{where}: the pack starts at record {r['id']} but its signed export"
                     f" checkpoint says {first_id}: records were dropped from the start")
            if r["prev_hash"] != export.get("first_prev_hash"):
                fail(f"{where}: record {r['id']} does not link to the boundary the export"
                     " checkpoint signed")
        elif r["id"] != expected:
            fail(f"{where}: record {expected} is missing (found {r['id']})")
        elif r["prev_hash"] != prev:
            fail(f"{where}: record {r['id']} does not link to the record before it")
        if sha(r["payload"]) != r["payload_digest"]:
            fail(f"{where}: record {r['id']}: payload was altered")
        material = "|".join([r["prev_hash"], str(r["id"]), r["ts"], r["actor"], r["action"],
                             r["subject"], r["execution_id"] or "", r["payload_digest"]])
        if sha(material) != r["hash"]:
            fail(f"{where}: record {r['id']}: contents were altered")
        seen = checkpoints.get(r["id"])
        if seen is not None and seen[1] != r["hash"]:
            fail(f"{where}: record {r['id']} does not match the signed checkpoint on"
                 f" {cp_path} line {seen[0]}")
        prev, expected, last = r["hash"], r["id"] + 1, r
        count += 1
    if count != declared:
        fail(f"{events}: {count} records but the signed export checkpoint declares {declared}:"
             " the pack was truncated or padded")
    if declared and (last["id"] != export["id"] or last["hash"] != export["hash"]):
        fail(f"{events}: the last record ({last['id']}) is not the one the export checkpoint"
             f" signed ({export['id']})")
    print(f"ok: {count} records verify (ids {first_id if count else '-'}"
          f" to {last['id'] if last else '-'}), signed by key {fingerprint}"
          f" (checked with {how})")


if __name__ == "__main__":
    main(sys.argv[1:])
'''

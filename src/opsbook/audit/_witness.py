"""Signed checkpoints of the audit chain, kept outside the database (docs/audit.md, ADR 0010).

A checkpoint says "record ``id`` has hash ``hash``", signed with an Ed25519 key that is not in
the database, and is appended as one JSON line to the *witness*: an append-only file in a
separate location. Whoever can only write the database cannot make a recomputed or truncated
chain match a signed checkpoint, nor sign a checkpoint for a record they appended.

The key comes from the secret ``audit-signing-key`` when a secret provider holds it (PEM, or the
32-byte seed as 64 hex digits), else from a 0600 PEM key file created on first use.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.audit._log import canonical_json, utcnow
from opsbook.config import Settings
from opsbook.db import Database
from opsbook.errors import OpsbookError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from opsbook.engine.secrets import SecretProvider

#: The name of the secret that holds the signing key, when a provider has it.
KEY_SECRET = "audit-signing-key"  # noqa: S105  # the secret's name, not its value
#: Signed bytes are this prefix followed by the canonical JSON of the line without ``sig``.
SIGN_PREFIX = "opsbook-audit-checkpoint-v1\n"
WITNESS_DIR = ".opsbook-audit"
WITNESS_FILE = "witness.jsonl"
KEY_FILE = "signing-key.pem"
_FIELDS = {"v", "id", "hash", "signed_at", "signer", "key_id", "sig"}
#: Parsed key files by path, with the (mtime, size, inode) they were read at: a long-running
#: signer parses its key once, and picks up a replaced file.
_KEYS: dict[str, tuple[tuple[int, int, int], Ed25519PrivateKey]] = {}


class WitnessError(OpsbookError):
    """The signing key or the witness cannot be used (missing, unreadable, malformed)."""

    exit_code = 2
    code = "audit_witness"


@dataclass(frozen=True)
class WitnessConfig:
    """Where the witness and the key file are, and which secret providers may hold the key."""

    witness: Path
    key_file: Path
    providers: Sequence[SecretProvider] = ()


def default_paths(workspace_root: Path) -> tuple[Path, Path]:
    """``<workspace>/.opsbook-audit/witness.jsonl`` and ``…/signing-key.pem``: beside the
    state directory, not in it. Production points ``OPSBOOK_AUDIT_WITNESS`` elsewhere."""
    base = workspace_root / WITNESS_DIR
    return base / WITNESS_FILE, base / KEY_FILE


def config_for(
    *, workspace_root: Path, settings: Settings, providers: Sequence[SecretProvider] = ()
) -> WitnessConfig:
    """The witness and key file from the settings (``OPSBOOK_AUDIT_WITNESS``,
    ``OPSBOOK_AUDIT_KEY_FILE``), defaulting beside the workspace's state directory; the key
    file defaults to the witness's directory."""
    default_witness, _ = default_paths(workspace_root)
    witness = settings.audit_witness or default_witness
    key_file = settings.audit_key_file or witness.parent / KEY_FILE
    return WitnessConfig(witness=witness, key_file=key_file, providers=tuple(providers))


@dataclass(frozen=True)
class Checkpoint:
    line: int
    id: int
    hash: str
    signed_at: str
    signer: str
    ids: tuple[tuple[int, int], ...]
    extra: dict[str, Any]


@dataclass(frozen=True)
class WitnessRead:
    checkpoints: tuple[Checkpoint, ...]
    problems: tuple[str, ...]  # "witness line N: …"
    raw_lines: tuple[tuple[int, str], ...]

    @property
    def latest(self) -> Checkpoint | None:
        return max(self.checkpoints, key=lambda c: c.id, default=None)


# -- the key -------------------------------------------------------------------------------


def _from_secret(value: str, where: str) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        load_pem_private_key,
    )

    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_private_key(text.encode("ascii"), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
            return key
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
    except ValueError as exc:
        raise WitnessError(
            f"the audit signing key in {where} is not usable: {exc}",
            hint="store an Ed25519 private key as PEM (PKCS#8) or its 32-byte seed as 64 hex"
            " digits",
        ) from exc


def secret_key(cfg: WitnessConfig) -> Ed25519PrivateKey | None:
    for provider in cfg.providers:
        value = provider.get(KEY_SECRET)
        if value:
            where = getattr(provider, "where", None)
            return _from_secret(value, where(KEY_SECRET) if where else KEY_SECRET)
    return None


def load_key(cfg: WitnessConfig, *, create: bool) -> Ed25519PrivateKey | None:
    """The signing key: the ``audit-signing-key`` secret, else the key file (created with mode
    0600, its directory 0700, when ``create`` and it does not exist yet)."""
    key = secret_key(cfg)
    if key is not None:
        return key
    path = cfg.key_file
    try:
        st = path.stat()
        cached = _KEYS.get(str(path))
        if cached is not None and cached[0] == (st.st_mtime_ns, st.st_size, st.st_ino):
            return cached[1]
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        if not create:
            return None
        return _create_key_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise WitnessError(
            f"audit signing key {path} cannot be read: {exc}",
            hint=f"make {path} readable by this user (mode 0600)",
        ) from exc
    key = _from_secret(text, str(path))
    _KEYS[str(path)] = ((st.st_mtime_ns, st.st_size, st.st_ino), key)
    return key


def _create_key_file(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            os.link(tmp, path)  # fails if another process created it first: use theirs
        except FileExistsError:
            return _from_secret(path.read_text(encoding="ascii"), str(path))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except OSError as exc:
        raise WitnessError(
            f"audit signing key {path} cannot be created: {exc}",
            hint="set OPSBOOK_AUDIT_KEY_FILE to a writable place, or store the key as the"
            f" secret {KEY_SECRET}",
        ) from exc
    return key


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        Encoding,
        PublicFormat,
    )

    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """A short fingerprint of the public key: the first 16 hex digits of its SHA-256."""
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(public).hexdigest()[:16]


# -- signing -------------------------------------------------------------------------------


def signed_bytes(line: dict[str, Any]) -> bytes:
    body = {k: v for k, v in line.items() if k != "sig"}
    return (SIGN_PREFIX + canonical_json(body)).encode("utf-8")


def sign_line(key: Ed25519PrivateKey, fields: dict[str, Any]) -> dict[str, Any]:
    line = {**fields, "v": 1, "key_id": key_id(public_bytes(key))}
    line["sig"] = key.sign(signed_bytes(line)).hex()
    return line


def append(path: Path, line: dict[str, Any]) -> None:
    """Append one line with a single ``write`` on an ``O_APPEND`` descriptor (concurrent
    writers do not interleave), fsynced before returning."""
    data = (canonical_json(line) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise WitnessError(
            f"audit witness {path} cannot be appended to: {exc}",
            hint="set OPSBOOK_AUDIT_WITNESS to a writable file outside the state directory",
        ) from exc


def head(db: Database) -> tuple[int, str]:
    row = db.one("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
    if row is None:
        return 0, ""
    return int(row["last_id"]), str(row["last_hash"])


def has_lines(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise WitnessError(f"audit witness {path} cannot be read: {exc}") from exc


def ranges(ids: Iterable[int]) -> list[list[int]]:
    """``[3, 4, 5, 9]`` → ``[[3, 5], [9, 9]]``."""
    out: list[list[int]] = []
    for i in sorted(set(ids)):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def _still_there(db: Database, own: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The records of ``own`` whose id still holds the hash this process wrote (a rolled-back
    transaction's record, or one altered since, is not vouched for)."""
    kept: list[tuple[int, str]] = []
    for start in range(0, len(own), 500):
        chunk = own[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = db.query(
            f"SELECT id, hash FROM events WHERE id IN ({marks})",  # noqa: S608  # placeholders
            [i for i, _ in chunk],
        )
        found = {int(r["id"]): str(r["hash"]) for r in rows}
        kept.extend((i, h) for i, h in chunk if found.get(i) == h)
    return kept


def sign_checkpoint(
    *,
    db: Database,
    cfg: WitnessConfig,
    signer: str,
    own: list[tuple[int, str]],
    accept: list[list[int]] | None = None,
) -> int | None:
    """Sign a checkpoint vouching for this process's own records and append it to the witness.

    The line says: record ``id`` (the newest of ``own``) has ``hash`` (as this process wrote
    it), and ``ids`` are the records this signer wrote. A record no checkpoint vouches for is
    reported by :func:`opsbook.audit.verify`: a database writer's forgery is never vouched for.
    The first checkpoint of a witness adopts the whole chain as it is (``ids`` from 1 to the
    head: trust on first use); ``accept`` vouches for records an operator reviewed. Runs after
    commit, outside any transaction. Returns the checkpointed id, or None if nothing to sign.
    """
    kept = _still_there(db, own) if own else []
    head_id, head_hash = head(db)
    if not has_lines(cfg.witness) and head_id and _first_use(cfg):
        cid, chash, ids = head_id, head_hash, [[1, head_id]]
    elif accept:
        cid, chash = head_id, head_hash
        ids = ranges([i for i, _ in kept]) + [list(r) for r in accept]
    elif kept:
        cid, chash = max(kept)
        ids = ranges([i for i, _ in kept])
    else:
        return None
    key = load_key(cfg, create=True)
    assert key is not None  # create=True makes one
    line = sign_line(
        key,
        {"id": cid, "hash": chash, "ids": ids, "signed_at": utcnow(), "signer": signer},
    )
    append(cfg.witness, line)
    return cid


def _first_use(cfg: WitnessConfig) -> bool:
    """An empty witness is a first use only while no key file exists yet: if the key file is
    there, checkpoints were signed and the witness was emptied or removed, and adopting the
    chain now would bless whatever was done to it (``audit verify`` reports it instead)."""
    return secret_key(cfg) is not None or not cfg.key_file.exists()


def sign_own(*, db: Database, cfg: WitnessConfig, signer: str) -> int | None:
    """Vouch for the records this process wrote since it last signed (see
    :func:`sign_checkpoint`); on failure they are kept for the next attempt."""
    from opsbook.audit._log import give_back, take_own  # noqa: PLC0415

    own = take_own()
    try:
        return sign_checkpoint(db=db, cfg=cfg, signer=signer, own=own)
    except BaseException:
        give_back(own)
        raise


def sign_extra(*, cfg: WitnessConfig, fields: dict[str, Any]) -> dict[str, Any]:
    """Sign and append a checkpoint with extra fields (an export's boundaries)."""
    key = load_key(cfg, create=True)
    assert key is not None
    line = sign_line(key, {"signed_at": utcnow(), "ids": [], **fields})
    append(cfg.witness, line)
    return line


# -- reading -------------------------------------------------------------------------------


def _verify_sig(public: bytes, line: dict[str, Any]) -> bool:
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PublicKey,
    )

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            bytes.fromhex(str(line["sig"])), signed_bytes(line)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def parse_line(n: int, raw: str, public: bytes) -> tuple[Checkpoint | None, str | None]:
    where = f"line {n}"
    try:
        line = json.loads(raw)
    except ValueError:
        return None, f"{where}: not JSON"
    if not isinstance(line, dict):
        return None, f"{where}: not a JSON object"
    missing = sorted(_FIELDS - line.keys())
    if missing:
        return None, f"{where}: missing {', '.join(missing)}"
    lowest = 0 if line.get("signer") == "export" else 1  # an export of an empty log
    if (
        not isinstance(line["id"], int)
        or isinstance(line["id"], bool)
        or line["id"] < lowest
        or not isinstance(line["hash"], str)
    ):
        return None, f"{where}: id must be a positive integer and hash a string"
    if line["key_id"] != key_id(public):
        return None, f"{where}: signed by key {line['key_id']}, not the audit key {key_id(public)}"
    if not _verify_sig(public, line):
        return None, f"{where}: the signature does not verify (the line was altered or forged)"
    ids = line.get("ids", [])
    if not isinstance(ids, list) or not all(
        isinstance(r, list)
        and len(r) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
        and 1 <= r[0] <= r[1] <= line["id"]
        for r in ids
    ):
        return None, f"{where}: ids must be a list of [first, last] ranges up to id"
    extra = {k: v for k, v in line.items() if k not in _FIELDS and k != "ids"}
    cp = Checkpoint(
        n,
        line["id"],
        line["hash"],
        str(line["signed_at"]),
        str(line["signer"]),
        tuple((r[0], r[1]) for r in ids),
        extra,
    )
    return cp, None


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for n, raw in enumerate(fh, 1):
                if raw.strip():
                    yield n, raw.rstrip("\n")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WitnessError(f"audit witness {path} cannot be read: {exc}") from exc


def read(path: Path, public: bytes) -> WitnessRead:
    """Every line of the witness, each checked: JSON, the fields, signed by ``public``."""
    checkpoints: list[Checkpoint] = []
    problems: list[str] = []
    raws: list[tuple[int, str]] = []
    for n, raw in iter_lines(path):
        raws.append((n, raw))
        cp, problem = parse_line(n, raw, public)
        if cp is not None:
            checkpoints.append(cp)
        else:
            problems.append(f"witness {path} {problem}")
    return WitnessRead(tuple(checkpoints), tuple(problems), tuple(raws))

"""The stored form of a backup: zlib-compressed, then AES-256-GCM in 1 MiB chunks, each with its
own nonce (the file's random base nonce plus the chunk number) and the chunk number and a
last-chunk flag as associated data, so a chunk cannot be reordered, dropped or truncated
unnoticed. Header: ``OPSBK1\\n`` then the 12-byte base nonce."""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"OPSBK1\n"
CHUNK = 1 << 20
KEY_SECRET = "backup-encryption-key"  # noqa: S105 - the secret's name, not its value


class DecryptError(Exception):
    """The file does not decrypt with this key (a wrong key, or a changed byte)."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"opsbook-backup-key\0" + key).hexdigest()[:16]


def load_or_create_key(secrets_dir: Path) -> bytes:
    """The key from the secret ``backup-encryption-key`` (64 hex characters) in the secrets
    directory, created owner-only on first use."""
    path = secrets_dir / KEY_SECRET
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        key = bytes.fromhex(text)
        if len(key) != 32:
            raise ValueError(f"{path}: the backup key must be 64 hex characters (32 bytes)")
        return key
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key.hex() + "\n")
    return key


def _nonce(base: bytes, i: int) -> bytes:
    n = int.from_bytes(base, "big") ^ i
    return n.to_bytes(12, "big")


def _chunks(src: BinaryIO) -> Iterator[bytes]:
    comp = zlib.compressobj(6)
    buf = b""
    while block := src.read(CHUNK):
        buf += comp.compress(block)
        while len(buf) >= CHUNK:
            yield buf[:CHUNK]
            buf = buf[CHUNK:]
    buf += comp.flush()
    yield buf


def encrypt_file(src: Path, dst: Path, key: bytes) -> tuple[int, str]:
    """Write ``src`` compressed and encrypted to ``dst``: (bytes written, SHA-256 of dst)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    aead = AESGCM(key)
    base = secrets.token_bytes(12)
    digest = hashlib.sha256()
    written = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        head = MAGIC + base
        fout.write(head)
        digest.update(head)
        written += len(head)
        pending: bytes | None = None
        i = 0
        for chunk in _chunks(fin):
            if pending is not None:
                rec = _record(aead, base, i, pending, last=False)
                fout.write(rec)
                digest.update(rec)
                written += len(rec)
                i += 1
            pending = chunk
        rec = _record(aead, base, i, pending or b"", last=True)
        fout.write(rec)
        digest.update(rec)
        written += len(rec)
    return written, digest.hexdigest()


def _record(aead: Any, base: bytes, i: int, data: bytes, *, last: bool) -> bytes:
    ad = struct.pack(">Q?", i, last)
    sealed: bytes = aead.encrypt(_nonce(base, i), data, ad)
    return struct.pack(">I?", len(sealed), last) + sealed


def decrypt_file(src: Path, dst: Path, key: bytes) -> None:
    """Restore ``src`` into ``dst``; DecryptError on a wrong key, a changed or missing chunk."""
    from cryptography.exceptions import InvalidTag  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    aead = AESGCM(key)
    decomp = zlib.decompressobj()
    with src.open("rb") as fin, dst.open("wb") as fout:
        if fin.read(len(MAGIC)) != MAGIC:
            raise DecryptError("not an opsbook backup (bad header)")
        base = fin.read(12)
        i = 0
        while True:
            head = fin.read(5)
            if len(head) < 5:
                raise DecryptError("the file ends before its last chunk (truncated)")
            size, last = struct.unpack(">I?", head)
            sealed = fin.read(size)
            if len(sealed) != size:
                raise DecryptError("the file ends inside a chunk (truncated)")
            try:
                data = aead.decrypt(_nonce(base, i), sealed, struct.pack(">Q?", i, last))
            except InvalidTag:
                raise DecryptError(f"chunk {i} does not decrypt") from None
            try:
                fout.write(decomp.decompress(data))
            except zlib.error as exc:
                raise DecryptError(f"chunk {i} does not decompress: {exc}") from None
            i += 1
            if last:
                break
        if fin.read(1):
            raise DecryptError("data after the last chunk")
        fout.write(decomp.flush())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

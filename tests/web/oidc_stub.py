"""A stub OpenID Connect provider (NOT a real identity provider: none can run on this machine):
a real HTTP server on 127.0.0.1 with discovery, JWKS, an authorization endpoint that consents
at once, and a token endpoint that checks the client secret and PKCE and signs an RS256 ID
token. ``mode`` makes it misbehave on purpose (wrong audience, wrong nonce, wrong key)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

CLIENT_ID = "opsbook-test"
CLIENT_SECRET = "stub-secret"


@dataclass
class Stub:
    issuer: str
    claims: dict[str, Any] = field(default_factory=dict)  # extra claims for the next token
    mode: str = "ok"
    codes: dict[str, dict[str, str]] = field(default_factory=dict)


@contextmanager
def oidc_stub(port: int) -> Iterator[Stub]:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
    other = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
    stub = Stub(issuer=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._json(
                    200,
                    {
                        "issuer": stub.issuer,
                        "authorization_endpoint": stub.issuer + "/authorize",
                        "token_endpoint": stub.issuer + "/token",
                        "jwks_uri": stub.issuer + "/jwks",
                        "response_types_supported": ["code"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    },
                )
            elif url.path == "/jwks":
                self._json(200, KeySet([key]).as_dict(private=False))
            elif url.path == "/authorize":
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                code = secrets.token_urlsafe(16)
                stub.codes[code] = q
                target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            auth = self.headers.get("Authorization", "")
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if auth != f"Basic {expected}":
                self._json(401, {"error": "invalid_client"})
                return
            req = stub.codes.pop(form.get("code", ""), None)
            if req is None:
                self._json(400, {"error": "invalid_grant"})
                return
            challenge = (
                base64.urlsafe_b64encode(
                    hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                )
                .rstrip(b"=")
                .decode()
            )
            if (
                challenge != req.get("code_challenge")
                or form.get("redirect_uri") != req["redirect_uri"]
            ):
                self._json(400, {"error": "invalid_grant", "error_description": "PKCE"})
                return
            now = int(time.time())
            claims = {
                "iss": stub.issuer,
                "aud": CLIENT_ID if stub.mode != "bad_aud" else "someone-else",
                "sub": "user-123",
                "iat": now,
                "exp": now + 300,
                "nonce": req["nonce"] if stub.mode != "bad_nonce" else "replayed",
                **stub.claims,
            }
            signer = other if stub.mode == "bad_sig" else key
            token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, signer)
            self._json(200, {"access_token": "at", "token_type": "Bearer", "id_token": token})

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)

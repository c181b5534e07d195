"""schemathesis hooks (SCHEMATHESIS_HOOKS=tests.e2e.fuzz_hooks): sign each request as a backend.

A reporter_backend sends no bearer token: it signs (RFC 9421). With FUZZ_BACKEND_KEY set (a
BackendKey as JSON), every request schemathesis sends is signed as the requests library hands
it over, so the signature covers exactly the bytes that go out.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec
import requests
import schemathesis

from shared.web.signing import BackendKey, sign_request


class Signed(requests.auth.AuthBase):
    def __init__(self, key: BackendKey) -> None:
        self.key = key
        self.private_key = key.private_key()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        assert isinstance(body, bytes) and request.method and request.url
        kept = {name: value for name, value in request.headers.items() if name.lower() == "idempotency-key"}
        request.headers.update(sign_request(request.method, request.url, kept, body, self.key.key_id, self.private_key))
        request.headers.pop("Authorization", None)
        return request


if raw := os.environ.get("FUZZ_BACKEND_KEY"):
    signed = Signed(msgspec.json.decode(raw, type=BackendKey))

    @schemathesis.hook
    def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
        kwargs["auth"] = signed

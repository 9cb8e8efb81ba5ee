"""schemathesis over the whole OpenAPI document: no 500, every response as documented.

The application owns its (memory) bus here: schemathesis runs an ASGI application's lifespan
once, on the event loop it calls the application from, so the bus lives on that loop too.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from aclbus import Settings
from aclbus.errors import InvalidIdentifier
from aclbus.subjects import validate_id
from aclbus_gateway import GatewaySettings, create_app

TOKEN = "alice-token-0123456789"

app = create_app(
    Settings(backend="memory", request_timeout=0.5),
    gateway=GatewaySettings(  # type: ignore[call-arg]
        tokens={"alice": TOKEN},  # type: ignore[dict-item]
        max_request_timeout=0.5,
        stream_duration=0.2,  # a valid stream ends, so an example of it does too
    ),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.auth()
class Token:
    """The caller's bearer token, given the schemathesis way: a negative case that drops the
    Authorization header (to see the 401) then goes without it, where a header passed to
    every call would have put it back."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    # A random sender_id is a 403 before anything else runs (test_messages covers that):
    # as the caller, the examples reach the code behind it. Only a valid id is replaced: an
    # invalid one (a negative case's mutation: an array, a bad string) must stay, for the
    # server to refuse it (422), or the mutation would seem accepted.
    if isinstance(body, dict) and _valid_id(body.get("sender_id")):
        return {**body, "sender_id": "alice"}
    return body


def _valid_id(value: object) -> bool:
    try:
        validate_id(value)
    except InvalidIdentifier:
        return False
    return True


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_keeps_its_document(case: schemathesis.Case) -> None:
    # 503 and 504 are documented answers here (no responder, timeout), so the generic
    # "no 5xx" check is replaced by the one that matters: never a 500.
    response = case.call()
    assert response.status_code != 500, response.text
    case.validate_response(response, excluded_checks=[not_a_server_error])

"""Every route, every media type, every kind of body: never a 500, always the error shape, nothing changed.

Through the real handlers (devstack.gateway, as API Gateway hands events to them) and moto. The fuzz
(test_fuzz_openapi) sends JSON; this sends what browsers, curl and scripts send by mistake or by habit:
forms, multipart without a boundary, text, XML, JSON under another spelling, and empty bodies.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack import template
from tests.conftest import Api

MEDIA_TYPES = [
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "APPLICATION/JSON",
    "application/json; charset=latin-1",
    "application/problem+json",
    "*/*",
]
BODIES = ["", "{}", "a=b&c=d", "--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--xyz--\r\n", "<a/>"]
ROUTES = sorted(route.route_key for route in template.routes())


def _path(route_key: str, ids: dict[str, str]) -> tuple[str, str]:
    method, path = route_key.split(" ", 1)
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return method, path


def _state(api: Api, session_id: str) -> dict[str, Any]:
    session = api.get(f"/ai-sessions/{session_id}").body
    fixes = api.get(f"/ai-sessions/{session_id}/suggested-fixes", query={"include_superseded": "true"}).body
    return {"session": session, "fixes": fixes, "settings": api.get("/account-settings").body}


@pytest.mark.parametrize("route_key", ROUTES)
def test_no_media_type_or_body_gets_a_500_or_another_error_shape(api: Api, route_key: str) -> None:
    session = api.new_session()
    fix = api.post(
        f"/ai-sessions/{session['id']}/suggested-fixes",
        {"title": "Restart the spooler", "confidence_pct": 80, "ai_drafted_script": "Restart-Service Spooler"},
    )
    assert fix.status == 201, fix.text
    ids = {"session_id": session["id"], "fix_id": fix.body["id"], "writeback_id": "wb_missing"}
    method, path = _path(route_key, ids)
    before = _state(api, session["id"])
    seen = set()
    for media_type in MEDIA_TYPES:
        for body in BODIES:
            headers = {} if media_type is None else {"content-type": media_type}
            response = api.call(method, path, raw_body=body, headers=headers)
            seen.add(response.status)
            assert response.status < 500, (media_type, body, response.text)
            assert response.headers["content-type"].startswith("application/json"), (media_type, body)
            if response.status >= 400:
                error = response.body["error"]
                assert isinstance(error["code"], str) and error["message"], (media_type, body, response.text)
            elif method != "GET" and "preview" not in path:
                # A change may only come from a JSON object body; no other media type can make one.
                assert body == "{}" and (media_type is None or "json" in media_type.lower()), (media_type, body)
    if method != "GET" and "preview" not in path:
        after = _state(api, session["id"])
        changed = {k for k in before if before[k] != after[k]}
        assert not changed or seen & {200, 201}, changed

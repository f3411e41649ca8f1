"""Account settings for Autotask and HaloPSA: each provider's connection body, secrets kept out of the settings
item and every response, the non-secret fields shown, the egress rules on every URL, and the preferences."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest

from tests.conftest import Api
from tests.helpers import table_items
from tests.leakcheck import register_secret

AUTOTASK = {
    "provider": "autotask",
    "username": "flowpilot-api@contoso.example",
    "secret": "at-secret-" + "Yq4Lm2Rt",
    "integration_code": "ATCODE" + "7Q2M4N8P6R1T3V5X9Z0B2D4F",
}
HALO = {
    "provider": "halopsa",
    "base_url": "https://contoso.halopsa.com",
    "client_id": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
    "client_secret": "halo-secret-" + "Wq8Nz3Kp5Vd",
    "tenant": "contoso",
}
register_secret(AUTOTASK["secret"], "settings test Autotask secret")
register_secret(AUTOTASK["integration_code"], "settings test Autotask integration code")
register_secret(HALO["client_secret"], "settings test Halo client secret")

SECRET_FIELDS = {"autotask": ("secret", "integration_code"), "halopsa": ("client_secret",)}


def _stored_secret(account: str = "acct-a") -> dict[str, Any]:
    value = boto3.client("secretsmanager").get_secret_value(SecretId=f"flowpilot/local/psa/{account}")
    stored: dict[str, Any] = json.loads(value["SecretString"])
    return stored


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (
            AUTOTASK,
            {
                **{"provider": "autotask", "site": None, "company_id": None, "client_id": None, "configured": True},
                **{"username": AUTOTASK["username"], "base_url": None},
            },
        ),
        (
            HALO,
            {
                **{"provider": "halopsa", "site": None, "company_id": None, "client_id": HALO["client_id"]},
                **{"configured": True, "base_url": HALO["base_url"], "tenant": "contoso"},
            },
        ),
    ],
    ids=["autotask", "halopsa"],
)
def test_secrets_go_to_secrets_manager_and_only_the_other_fields_are_shown(
    api: Api, caplog: pytest.LogCaptureFixture, body: dict[str, str], shown: dict[str, Any]
) -> None:
    caplog.set_level(logging.DEBUG)
    saved = api.put("/account-settings/psa-connection", body)
    assert saved.status == 200, saved.text
    view = api.get("/account-settings").body["psa"]
    assert {k: v for k, v in view.items() if k != "updated_at"} == shown
    secret_fields = SECRET_FIELDS[body["provider"]]
    assert _stored_secret() == {"provider": body["provider"], **{name: body[name] for name in secret_fields}}
    dumped = json.dumps(table_items(), default=str)
    for name in secret_fields:
        assert body[name] not in saved.text
        assert body[name] not in dumped
        assert body[name] not in caplog.text


def test_switching_provider_replaces_the_shown_fields(api: Api) -> None:
    assert api.put("/account-settings/psa-connection", HALO).status == 200
    assert api.put("/account-settings/psa-connection", AUTOTASK).status == 200
    view = api.get("/account-settings").body["psa"]
    assert view["provider"] == "autotask"
    assert view["client_id"] is None and "tenant" not in view  # DESIGN §3's keys stay, as null
    assert _stored_secret() == {
        "provider": "autotask",
        "secret": AUTOTASK["secret"],
        "integration_code": AUTOTASK["integration_code"],
    }


@pytest.mark.parametrize(
    "body",
    [
        {**AUTOTASK, "base_url": "http://webservices5.autotask.net/ATServicesRest/"},
        {**AUTOTASK, "base_url": "https://10.1.2.3/ATServicesRest/"},
        {**HALO, "base_url": "https://169.254.169.254"},
        {**HALO, "base_url": "http://contoso.halopsa.com"},
        {**HALO, "base_url": "https://localhost"},
    ],
    ids=["at-http", "at-private", "halo-metadata", "halo-http", "halo-localhost"],
)
def test_every_providers_urls_pass_the_egress_rules(api: Api, body: dict[str, str]) -> None:
    response = api.put("/account-settings/psa-connection", body)
    assert response.status == 422, response.text
    assert response.body["error"]["code"] == "invalid_base_url"
    assert api.get("/account-settings").body["psa"]["configured"] is False


def test_an_autotask_zone_url_is_kept_as_the_base_url(api: Api) -> None:
    url = "https://webservices5.autotask.net/ATServicesRest/"
    response = api.put("/account-settings/psa-connection", {**AUTOTASK, "base_url": url})
    assert response.status == 200, response.text
    # Normalised by the egress check (no trailing slash); the provider joins `V1.0/` either way.
    assert response.body["psa"]["base_url"] == url.rstrip("/")


@pytest.mark.parametrize(
    "body",
    [
        {k: v for k, v in AUTOTASK.items() if k != "integration_code"},
        {k: v for k, v in AUTOTASK.items() if k != "secret"},
        {**AUTOTASK, "secret": ""},
        {**AUTOTASK, "secret": "bad\u0000secret"},
        {k: v for k, v in HALO.items() if k != "client_secret"},
        {k: v for k, v in HALO.items() if k != "base_url"},
        {**HALO, "tenant": "a/b"},
        {**HALO, "site": "x.example.com"},
        {**AUTOTASK, "public_key": "x" * 10},
        {**AUTOTASK, "provider": "kaseya"},
        {**HALO, "provider": None},
    ],
)
def test_a_bad_connection_body_is_422_and_saves_nothing(api: Api, body: dict[str, Any]) -> None:
    response = api.put("/account-settings/psa-connection", body)
    assert response.status == 422, response.text
    assert api.get("/account-settings").body["psa"]["configured"] is False
    for name in ("secret", "integration_code", "client_secret"):
        value = body.get(name)
        if isinstance(value, str) and len(value) > 6:
            assert value not in response.text


def test_provider_preferences_round_trip_and_are_validated(api: Api) -> None:
    prefs = {
        "autotask_resolved_status_id": 5,
        "autotask_escalated_status_id": 14,
        "autotask_resolution_note_type_id": 3,
        "autotask_escalation_note_type_id": 4,
        "autotask_public_publish_value": 1,
        "autotask_internal_publish_value": 2,
        "halo_resolved_status_id": 9,
        "halo_escalated_status_id": 21,
        "halo_resolution_outcome_id": 10,
        "halo_escalation_outcome_id": 7,
        "notify_customer_on_resolve": False,
    }
    response = api.put("/account-settings/preferences", prefs)
    assert response.status == 200, response.text
    got = api.get("/account-settings").body["preferences"]
    assert {k: got[k] for k in prefs} == prefs
    assert api.put("/account-settings/preferences", {}).body["preferences"]["notify_customer_on_resolve"] is True
    for bad in (
        {"halo_resolution_outcome_id": 0},
        {"autotask_resolved_status_id": "5"},
        {"autotask_public_publish_value": -1},
        {"notify_customer_on_resolve": "yes"},
        {"halo_outcome_id": 7},
    ):
        assert api.put("/account-settings/preferences", bad).status == 422, bad


@pytest.mark.parametrize("body", [None, AUTOTASK, HALO], ids=["none", "autotask", "halopsa"])
def test_the_view_has_designs_psa_keys_whatever_the_provider(api: Api, body: dict[str, str] | None) -> None:
    """DESIGN §3: `psa: {provider, site, company_id, client_id, configured}`; reading `psa.site` never breaks."""
    if body is not None:
        assert api.put("/account-settings/psa-connection", body).status == 200
    view = api.get("/account-settings").body["psa"]
    assert {"provider", "site", "company_id", "client_id", "configured"} <= set(view)
    assert view["configured"] is (body is not None)

"""Account settings: preferences, and the PSA connection whose keys never come back out."""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from tests.conftest import Api
from tests.helpers import table_items
from tests.leakcheck import register_psa_credentials

CONNECTION = {
    "provider": "connectwise",
    "site": "na.myconnectwise.net",
    "company_id": "contoso",
    "public_key": "pub-" + "Q7w9Zx2",
    "private_key": "priv-" + "K3m8Vb5Ln",
    "client_id": "3d9b2c1e-8f7a-4c6d-9e5b-1a2b3c4d5e6f",
}
register_psa_credentials(CONNECTION["company_id"], CONNECTION["public_key"], CONNECTION["private_key"], "settings test")


def test_settings_start_empty(api: Api) -> None:
    body = api.get("/account-settings").body
    assert body["psa"]["configured"] is False
    assert body["preferences"]["cw_resolved_status_id"] is None


def test_psa_keys_go_to_secrets_manager_and_never_come_back(
    api: Api, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    saved = api.put("/account-settings/psa-connection", CONNECTION)
    assert saved.status == 200, saved.text
    got = api.get("/account-settings")
    for response in (saved, got):
        assert CONNECTION["private_key"] not in response.text
        assert CONNECTION["public_key"] not in response.text
    assert got.body["psa"] == {
        "provider": "connectwise",
        "site": "na.myconnectwise.net",
        "company_id": "contoso",
        "client_id": CONNECTION["client_id"],
        "base_url": None,
        "configured": True,
        "updated_at": got.body["psa"]["updated_at"],
    }
    secret = boto3.client("secretsmanager").get_secret_value(SecretId="flowpilot/local/psa/acct-a")
    assert json.loads(secret["SecretString"]) == {
        "provider": "connectwise",
        "public_key": CONNECTION["public_key"],
        "private_key": CONNECTION["private_key"],
    }
    assert CONNECTION["private_key"] not in json.dumps(table_items(), default=str)
    logs = capsys.readouterr().out + caplog.text
    assert CONNECTION["private_key"] not in logs and CONNECTION["public_key"] not in logs


def test_preferences_round_trip_and_validation(api: Api) -> None:
    prefs = {
        "cw_resolved_status_id": 5,
        "cw_escalated_status_id": 6,
        "cw_resolved_status_ids_by_board": {"2": 25},
    }
    response = api.put("/account-settings/preferences", prefs)
    assert response.status == 200
    assert response.body["preferences"]["cw_resolved_status_ids_by_board"] == {"2": 25}
    assert api.put("/account-settings/preferences", {"cw_resolved_status_id": 0}).status == 422
    assert api.put("/account-settings/preferences", {"cw_resolved_status_ids_by_board": {"x": 1}}).status == 422
    assert api.get("/account-settings").body["preferences"]["cw_resolved_status_id"] == 5


@pytest.mark.parametrize(
    "base_url",
    [
        "http://na.myconnectwise.net/v4_6_release/apis/3.0",
        "https://127.0.0.1/apis/3.0",
        "https://169.254.169.254/latest",
        "https://10.0.0.5/apis",
        "https://192.168.1.10/x",
        "https://localhost/x",
        "https://user:pw@example.com/x",
        "https://[::1]/x",
        "https://metadata.google.internal/x",
    ],
)
def test_psa_base_url_must_be_public_https_outside_the_local_stack(api: Api, base_url: str) -> None:
    # AWS's rules: the local stack's loopback allowance (devstack/loopback.py) is not installed here.
    response = api.put("/account-settings/psa-connection", {**CONNECTION, "base_url": base_url})
    assert response.status == 422, response.text
    assert response.body["error"]["code"] == "invalid_base_url"
    assert api.get("/account-settings").body["psa"]["configured"] is False


def test_public_https_base_url_is_accepted(api: Api) -> None:
    url = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0"
    response = api.put("/account-settings/psa-connection", {**CONNECTION, "base_url": url})
    assert response.status == 200, response.text
    assert response.body["psa"]["base_url"] == url


def test_missing_keys_is_422_and_saves_nothing(api: Api) -> None:
    response = api.put("/account-settings/psa-connection", {k: v for k, v in CONNECTION.items() if k != "private_key"})
    assert response.status == 422
    assert api.get("/account-settings").body["psa"]["configured"] is False


def test_accounts_do_not_share_settings(api: Api, api_b: Api) -> None:
    api.put("/account-settings/psa-connection", CONNECTION)
    api.put("/account-settings/preferences", {"cw_resolved_status_id": 5})
    b = api_b.get("/account-settings").body
    assert b["psa"]["configured"] is False
    assert b["preferences"]["cw_resolved_status_id"] is None
    api_b.put("/account-settings/preferences", {"cw_resolved_status_id": 9})
    assert api.get("/account-settings").body["preferences"]["cw_resolved_status_id"] == 5

"""The console with each of the three PSAs: the connection form per provider (secrets write-only), each
provider's preferences saved without touching another's, tickets linked in the account's PSA, and the
write-back's refusals that a setting or a relink fixes.

The browser's default account (acct-dev) is connected to the ConnectWise simulator and the other console
tests rely on it: every test here that changes it puts back the connection and preferences it found
(`restore_account`). The Autotask and HaloPSA simulators are the ones the local stack's demo accounts
(acct-autotask, acct-halo) use; a test that posts to one uses a spare ticket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from devstack import autotask_simulator, cw_simulator, halo_simulator
from tests.web.conftest import Stack, run_axe, screenshot

# The secrets the local stack's simulators accept (GET /account-settings never returns them).
SIMULATOR_SECRETS: dict[str, dict[str, str]] = {
    "connectwise": {"public_key": cw_simulator.DEMO_PUBLIC_KEY, "private_key": cw_simulator.DEMO_PRIVATE_KEY},
    "autotask": {
        "secret": autotask_simulator.DEMO_SECRET,
        "integration_code": autotask_simulator.DEMO_INTEGRATION_CODE,
    },
    "halopsa": {"client_secret": halo_simulator.DEMO_CLIENT_SECRET},
}
# The non-secret fields of each provider's connection body.
CONNECTION_FIELDS = {
    "connectwise": ("site", "company_id", "client_id", "base_url"),
    "autotask": ("username", "base_url"),
    "halopsa": ("base_url", "client_id", "tenant"),
}
DEMO_ACCOUNTS = {"autotask": "acct-autotask", "halopsa": "acct-halo"}
PROVIDER_LABELS = {"connectwise": "ConnectWise Manage", "autotask": "Autotask", "halopsa": "HaloPSA"}
# Labels only one provider's connection form has (a label both share, like "Client id", is not here).
OWN_CONNECTION_LABELS = {
    "connectwise": ("Site", "Company id", "Public key", "Private key", "Base URL (optional)"),
    "autotask": ("API user (email)", "Secret", "Integration code", "Zone URL (optional)"),
    "halopsa": ("Instance URL", "Client secret", "Tenant (optional)"),
}
OWN_PREFERENCE_LABELS = {
    "connectwise": ("Resolved status per board", "Escalated status per board"),
    "autotask": (
        "Resolution note type id",
        "Escalation note type id",
        "Customer-visible publish value (pin)",
        "Internal publish value (pin)",
    ),
    "halopsa": ("Resolution outcome id (required to post)", "Escalation outcome id (required to post)"),
}


def connection_body(psa: dict[str, Any], secrets: dict[str, str] | None = None) -> dict[str, Any]:
    """The PUT body that saves `psa` (a GET view) again, with the simulator's secrets unless others are given."""
    provider = psa["provider"]
    fields = {name: psa[name] for name in CONNECTION_FIELDS[provider] if psa.get(name) is not None}
    return {"provider": provider, **fields, **(secrets if secrets is not None else SIMULATOR_SECRETS[provider])}


def put_ok(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.put(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def without_time(psa: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in psa.items() if name != "updated_at"}


@pytest.fixture
def restore_account(api: httpx.Client) -> Iterator[dict[str, Any]]:
    """acct-dev's settings as found (yielded); afterwards its connection and preferences are saved back."""
    before = api.get("/account-settings").json()
    assert before["psa"]["configured"], "the local stack's acct-dev should be connected to a simulator"
    yield before
    put_ok(api, "/account-settings/psa-connection", connection_body(before["psa"]))
    put_ok(api, "/account-settings/preferences", before["preferences"])
    after = api.get("/account-settings").json()
    assert without_time(after["psa"]) == without_time(before["psa"])
    assert after["preferences"] == before["preferences"]


def connect_to_simulator(api: httpx.Client, provider: str, **preferences: Any) -> dict[str, Any]:
    """acct-dev connected to the simulator the stack's demo account of `provider` uses, with its preferences
    (each given one overrides the demo's; `client_secret=`/`secret=` replace the simulator's secret)."""
    demo = api.get("/account-settings", headers={"X-Dev-Account-Id": DEMO_ACCOUNTS[provider]}).json()
    secrets = {**SIMULATOR_SECRETS[provider]}
    for name in list(preferences):
        if name in secrets:
            secrets[name] = preferences.pop(name)
    put_ok(api, "/account-settings/psa-connection", connection_body(demo["psa"], secrets))
    current = api.get("/account-settings").json()["preferences"]
    return put_ok(api, "/account-settings/preferences", {**current, **demo["preferences"], **preferences})


def record_responses(page: Any) -> list[tuple[str, str]]:
    """(url, body) of every response the page receives, read as it arrives (a reload drops the bodies)."""
    received: list[tuple[str, str]] = []

    def read(request: Any) -> None:
        response = request.response()
        if response is not None and request.method != "OPTIONS" and response.status not in (204, 304):
            received.append((response.url, response.body().decode("utf-8", "replace")))

    page.on("requestfinished", read)
    return received


def assert_never_shown(page: Any, received: list[tuple[str, str]], *secrets: str) -> None:
    """No secret in the page's HTML, in any of its inputs, or in any response the page received."""
    assert any("/account-settings/psa-connection" in url for url, _ in received), "the save's answer was not seen"
    html = page.content()
    values = page.evaluate("[...document.querySelectorAll('input, textarea')].map((el) => el.value)")
    for secret in secrets:
        assert secret not in html
        assert secret not in values
        for url, body in received:
            assert secret not in body, url


def open_settings(page: Any) -> None:
    page.goto("/#/settings")
    expect(page.get_by_role("heading", name="PSA connection")).to_be_visible()


def choose(page: Any, provider: str) -> None:
    page.get_by_label("PSA", exact=True).select_option(provider)
    expect(page.locator(".provider-fields legend").first).to_have_text(f"{PROVIDER_LABELS[provider]} connection")


def test_an_autotask_connection_is_saved_through_the_form_and_its_secrets_never_come_back(
    page: Any, api: httpx.Client, restore_account: dict[str, Any]
) -> None:
    secret, code = "at-secret-Zq81!vR", "AT-TRACKING-7731-SECRET"
    zone = "https://webservices5.autotask.net/ATServicesRest/"
    responses = record_responses(page)
    open_settings(page)
    choose(page, "autotask")
    expect(page.locator("#psa-provider-hint")).to_contain_text("Saving replaces that connection")
    page.get_by_label("API user (email)").fill("api-user@acme-msp.example")
    page.get_by_label("Secret", exact=True).fill(secret)
    page.get_by_label("Integration code").fill(code)
    page.get_by_label("Zone URL (optional)").fill(zone)
    page.get_by_role("button", name="Save connection").click()
    expect(page.get_by_text("Connection saved.")).to_be_visible()
    expect(page.get_by_label("Secret", exact=True)).to_have_value("")
    expect(page.get_by_label("Integration code")).to_have_value("")
    state = page.locator(".connection-state")
    expect(state).to_contain_text("connected")
    expect(state).to_contain_text("Autotask · api-user@acme-msp.example · zone " + zone.rstrip("/"))

    psa = api.get("/account-settings").json()["psa"]
    assert psa["provider"] == "autotask" and psa["configured"] is True
    assert psa["username"] == "api-user@acme-msp.example"
    assert psa["base_url"].rstrip("/") == zone.rstrip("/")
    assert secret not in json.dumps(psa) and code not in json.dumps(psa)

    page.reload()  # the saved connection comes back without its secrets
    expect(page.get_by_label("PSA", exact=True)).to_have_value("autotask")
    expect(page.get_by_label("API user (email)")).to_have_value("api-user@acme-msp.example")
    expect(page.get_by_label("Secret", exact=True)).to_have_value("")
    expect(page.locator("#psa-secret-note")).to_contain_text("never shown")
    assert page.get_by_label("Secret", exact=True).get_attribute("type") == "password"
    screenshot(page, "settings-autotask")
    assert_never_shown(page, responses, secret, code)


def test_a_halo_connection_is_saved_through_the_form_and_its_secret_never_comes_back(
    page: Any, api: httpx.Client, restore_account: dict[str, Any]
) -> None:
    client_secret = "halo-client-secret-Wm3#pL0"
    responses = record_responses(page)
    open_settings(page)
    choose(page, "halopsa")
    page.get_by_label("Instance URL").fill("acme.halopsa.com")  # refused before sending: not a URL
    page.get_by_label("Client id", exact=True).fill("c0ffee00-halo-app")
    page.get_by_label("Client secret").fill(client_secret)
    page.get_by_role("button", name="Save connection").click()
    expect(page.locator(".form-message .error")).to_contain_text('Instance URL: "acme.halopsa.com" is not a URL')
    page.get_by_label("Instance URL").fill("https://acme.halopsa.com")
    page.get_by_label("Tenant (optional)").fill("acme")
    page.get_by_role("button", name="Save connection").click()
    expect(page.get_by_text("Connection saved.")).to_be_visible()
    expect(page.get_by_label("Client secret")).to_have_value("")
    expect(page.locator(".connection-state")).to_contain_text("HaloPSA · https://acme.halopsa.com · tenant acme")

    psa = api.get("/account-settings").json()["psa"]
    assert psa["provider"] == "halopsa" and psa["configured"] is True
    assert psa["base_url"].rstrip("/") == "https://acme.halopsa.com"
    assert psa["client_id"] == "c0ffee00-halo-app" and psa["tenant"] == "acme"
    assert client_secret not in json.dumps(psa)

    page.reload()
    expect(page.get_by_label("Instance URL")).to_have_value(psa["base_url"])
    expect(page.get_by_label("Client secret")).to_have_value("")
    screenshot(page, "settings-halo")
    assert_never_shown(page, responses, client_secret)


def test_switching_the_provider_swaps_both_forms_and_keeps_the_saved_connection(
    page: Any, api: httpx.Client, restore_account: dict[str, Any]
) -> None:
    before = restore_account
    open_settings(page)
    expect(page.get_by_label("PSA", exact=True)).to_have_value("connectwise")
    for provider in ("autotask", "halopsa", "connectwise"):
        choose(page, provider)
        for other, labels in OWN_CONNECTION_LABELS.items():
            for label in labels:
                expect(page.get_by_label(label, exact=True)).to_have_count(1 if other == provider else 0)
        for other, labels in OWN_PREFERENCE_LABELS.items():
            for label in labels:
                expect(page.get_by_label(label, exact=True)).to_have_count(1 if other == provider else 0)
        expect(page.get_by_label("Resolved status id")).to_have_count(1)
        expect(page.get_by_label("Notify the customer when a resolution is posted")).to_be_visible()
        if provider != "connectwise":
            expect(page.locator("#psa-provider-hint")).to_contain_text("Saving replaces that connection")
    # Back on the saved provider: its fields as saved, secrets empty, nothing changed by looking.
    expect(page.locator("#psa-provider-hint")).to_have_text("The account is connected to ConnectWise Manage.")
    expect(page.get_by_label("Company id")).to_have_value(before["psa"]["company_id"])
    expect(page.get_by_label("Public key")).to_have_value("")
    expect(page.get_by_label("Resolved status per board")).to_have_value("2 = 25")
    assert api.get("/account-settings").json()["psa"] == before["psa"]


def test_each_providers_preferences_save_without_wiping_another_providers(
    page: Any, api: httpx.Client, restore_account: dict[str, Any]
) -> None:
    before = restore_account["preferences"]
    cw_values = {key: value for key, value in before.items() if key.startswith("cw_")}
    open_settings(page)

    choose(page, "autotask")
    page.get_by_label("Resolved status id").fill("5")
    page.get_by_label("Escalated status id").fill("14")
    page.get_by_label("Resolution note type id").fill("abc")  # refused before sending
    page.get_by_role("button", name="Save status mapping").click()
    expect(page.locator(".form-message .error")).to_contain_text('Resolution note type id: "abc" is not a number.')
    page.get_by_label("Resolution note type id").fill("3")
    page.get_by_label("Escalation note type id").fill("4")
    page.get_by_label("Customer-visible publish value (pin)").fill("1")
    page.get_by_label("Internal publish value (pin)").fill("0")  # a picklist value may be 0
    page.get_by_role("button", name="Save status mapping").click()
    expect(page.get_by_text("Status mapping saved.")).to_be_visible()
    autotask_values = {
        "autotask_resolved_status_id": 5,
        "autotask_escalated_status_id": 14,
        "autotask_resolution_note_type_id": 3,
        "autotask_escalation_note_type_id": 4,
        "autotask_public_publish_value": 1,
        "autotask_internal_publish_value": 0,
    }
    saved = api.get("/account-settings").json()["preferences"]
    assert {key: saved[key] for key in autotask_values} == autotask_values
    assert {key: saved[key] for key in cw_values} == cw_values
    assert all(saved[key] is None for key in saved if key.startswith("halo_"))

    choose(page, "halopsa")
    page.get_by_label("Resolved status id").fill("9")
    page.get_by_label("Escalated status id").fill("21")
    page.get_by_label("Resolution outcome id (required to post)").fill("12")
    page.get_by_role("button", name="Save status mapping").click()
    # Saved, with a reminder: Halo refuses a note without an outcome.
    message = page.locator(".form-message").filter(has_text="Status mapping saved.")
    expect(message).to_contain_text("HaloPSA refuses notes until Escalation outcome id is set.")
    page.get_by_label("Escalation outcome id (required to post)").fill("7")
    page.get_by_role("button", name="Save status mapping").click()
    expect(message).not_to_contain_text("refuses notes")
    halo_values = {
        "halo_resolved_status_id": 9,
        "halo_escalated_status_id": 21,
        "halo_resolution_outcome_id": 12,
        "halo_escalation_outcome_id": 7,
    }
    saved = api.get("/account-settings").json()["preferences"]
    assert {key: saved[key] for key in halo_values} == halo_values
    assert {key: saved[key] for key in autotask_values} == autotask_values
    assert {key: saved[key] for key in cw_values} == cw_values

    page.get_by_label("Resolution outcome id (required to post)").fill("0")  # the API's 422, shown as it is
    page.get_by_role("button", name="Save status mapping").click()
    expect(page.locator(".form-message .error")).to_contain_text("halo_resolution_outcome_id")

    page.reload()  # each provider's values come back from the API
    choose(page, "autotask")
    expect(page.get_by_label("Internal publish value (pin)")).to_have_value("0")
    expect(page.get_by_label("Resolution note type id")).to_have_value("3")
    choose(page, "connectwise")
    expect(page.get_by_label("Resolved status id")).to_have_value(str(before["cw_resolved_status_id"]))
    assert api.get("/account-settings").json()["psa"] == restore_account["psa"]  # the connection untouched


def test_the_notify_checkbox_round_trips(page: Any, api: httpx.Client, restore_account: dict[str, Any]) -> None:
    assert restore_account["preferences"]["notify_customer_on_resolve"] is True
    open_settings(page)
    notify = page.get_by_label("Notify the customer when a resolution is posted")
    expect(notify).to_be_checked()
    expect(page.locator("#notify-customer-hint")).to_contain_text("does not apply to Autotask")
    notify.uncheck()
    page.get_by_role("button", name="Save status mapping").click()
    expect(page.get_by_text("Status mapping saved.")).to_be_visible()
    saved = api.get("/account-settings").json()["preferences"]
    assert saved["notify_customer_on_resolve"] is False
    assert saved["cw_resolved_status_ids_by_board"] == restore_account["preferences"]["cw_resolved_status_ids_by_board"]

    page.reload()
    expect(notify).not_to_be_checked()
    choose(page, "halopsa")  # one preference for every provider
    expect(notify).not_to_be_checked()
    notify.focus()
    page.keyboard.press("Space")
    expect(notify).to_be_checked()
    page.get_by_role("button", name="Save status mapping").click()
    expect(page.get_by_text("Status mapping saved.")).to_be_visible()
    assert api.get("/account-settings").json()["preferences"]["notify_customer_on_resolve"] is True


def test_a_session_started_on_a_halo_account_links_a_halo_ticket_and_posts_there(
    page: Any, stack: Stack, api: httpx.Client, restore_account: dict[str, Any]
) -> None:
    connect_to_simulator(api, "halopsa")
    halo = api.get("/account-settings").json()["psa"]["base_url"]
    page.goto("/")
    page.get_by_text("Start a session").click()
    page.get_by_label("Title").fill("Halo: new starter laptop")
    page.get_by_label("Problem").fill("The new starter's laptop needs its profile set up.")
    expect(page.get_by_label("ConnectWise ticket number")).to_have_count(0)
    page.get_by_label("HaloPSA ticket number").fill("1006")
    page.get_by_role("button", name="Create session").click()
    expect(page.get_by_role("heading", name="Halo: new starter laptop", level=1)).to_be_visible()
    session_id = page.url.rsplit("/", 1)[-1]
    assert api.get(f"/ai-sessions/{session_id}").json()["psa_ticket"] == {"provider": "halopsa", "ticket_id": "1006"}
    expect(page.locator(".page-head .session-meta")).to_contain_text("HaloPSA ticket #1006")
    expect(page.get_by_role("region", name="PSA ticket")).to_contain_text("HaloPSA ticket #1006")
    expect(page.get_by_label("HaloPSA ticket number")).to_be_visible()  # relinking stays in Halo

    page.get_by_role("button", name="Preview resolution note").click()
    expect(page.get_by_label("Note")).not_to_be_empty()
    expect(page.locator(".editor")).to_contain_text("an action the end user can see")
    page.get_by_role("button", name="Confirm & post").click()
    outcome = page.get_by_role("status").filter(has_text="Resolved")
    expect(outcome).to_contain_text("The HaloPSA ticket #1006 is now in status Closed", timeout=60_000)
    ticket = httpx.get(f"{halo}/__simulator/tickets/1006", timeout=10).json()
    assert len(ticket["notes"]) == 1

    page.goto("/")
    row = page.locator(".session-row", has_text="Halo: new starter laptop")
    expect(row).to_contain_text("HaloPSA #1006")


def test_an_account_without_a_psa_says_so_and_points_to_settings(page: Any) -> None:
    page.add_init_script("localStorage.setItem('flowpilot.account', 'acct-console-no-psa')")
    page.goto("/")
    page.get_by_text("Start a session").click()
    form = page.locator(".new-session")
    expect(form).to_contain_text("This account has no PSA connection")
    expect(form.get_by_label(re.compile("ticket", re.I))).to_have_count(0)
    page.get_by_label("Title").fill("Local only")
    page.get_by_label("Problem").fill("No PSA here.")
    page.get_by_role("button", name="Create session").click()
    ticket = page.get_by_role("region", name="PSA ticket")
    expect(ticket).to_contain_text("This account has no PSA connection")
    ticket.get_by_role("link", name="connect a PSA in Settings").click()
    expect(page.locator(".connection-state")).to_contain_text("not connected")


# The write-back's refusals that a setting, a relink or a new connection fixes:
# code -> (the session ticket's PSA, the outcome's title, what its next step names).
REFUSALS = {
    "psa_provider_mismatch": (
        "halopsa",
        "the ticket is in another PSA",
        "link this session to a ticket in ConnectWise",
    ),
    "psa_not_configured": ("halopsa", "a setting is missing", "Resolution outcome id (halo_resolution_outcome_id)"),
    "psa_visibility_unknown": (
        "autotask",
        "Autotask does not say which note visibility",
        "Customer-visible publish value (autotask_public_publish_value)",
    ),
    "psa_auth_failed": ("halopsa", "HaloPSA refused the credentials", "save the connection again"),
}


@pytest.mark.parametrize("code", list(REFUSALS))
def test_a_refused_post_says_what_to_change_and_links_to_settings(
    page: Any, api: httpx.Client, restore_account: dict[str, Any], code: str
) -> None:
    ticket_provider, title, next_step = REFUSALS[code]
    # psa_provider_mismatch: the account stays on ConnectWise, the ticket is in Halo.
    if code == "psa_not_configured":
        connect_to_simulator(api, "halopsa", halo_resolution_outcome_id=None)
    elif code == "psa_visibility_unknown":
        connect_to_simulator(api, "autotask", autotask_public_publish_value=99)  # not an active publish value
    elif code == "psa_auth_failed":
        connect_to_simulator(api, "halopsa", client_secret="not-the-client-secret")
    response = api.post(
        "/ai-sessions",
        json={
            "title": f"Refused: {code}",
            "problem": "The customer's VPN drops.",
            "psa_ticket": {"provider": ticket_provider, "ticket_id": "1005"},
        },
    )
    assert response.status_code == 201, response.text
    session_id = response.json()["id"]
    page.goto(f"/#/sessions/{session_id}")
    if code == "psa_provider_mismatch":
        expect(page.get_by_role("region", name="PSA ticket")).to_contain_text("a post will be refused")
    page.get_by_role("button", name="Preview resolution note").click()
    expect(page.get_by_label("Note")).not_to_be_empty()
    page.get_by_role("button", name="Confirm & post").click()
    outcome = page.get_by_role("status").filter(has_text="Not posted")
    expect(outcome).to_contain_text(title, timeout=60_000)
    expect(outcome).to_contain_text(code)
    expect(outcome.locator(".next-step")).to_contain_text(next_step)
    outcome.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="PSA connection")).to_be_visible()
    assert api.get(f"/ai-sessions/{session_id}").json()["status"] == "active"


@pytest.mark.parametrize("provider", ["connectwise", "autotask", "halopsa"])
def test_the_settings_page_has_no_serious_axe_violations_for_each_provider(page: Any, provider: str) -> None:
    open_settings(page)
    choose(page, provider)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"settings for {provider} at {width}px scrolls sideways by {overflow}px"
        assert run_axe(page) == [], f"axe on settings for {provider} at {width}px"

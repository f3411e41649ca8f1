"""The engineer's console in headless Chromium against the local stack, under the console's CSP.

Demo tickets: 1001 resolve, 1002 escalate, 1003 ignores status changes (502), 1004..1006 spare.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import CSP, Stack, add_evidence, new_session, run_axe, screenshot

SCREENS = ("sessions", "session", "settings")


def open_session(page: Any, session_id: str) -> None:
    page.goto(f"/#/sessions/{session_id}")
    expect(page.get_by_role("button", name="Preview resolution note")).to_be_visible()


def add_fix(api: httpx.Client, session_id: str, title: str, **fields: Any) -> dict[str, Any]:
    body = {
        "title": title,
        "description": "Restart the VPN service and clear its cache.",
        "confidence_pct": 80,
        "ai_drafted_script": "Restart-Service -Name {{service}}\nClear-Cache -Path {{path}}",
        "ai_drafted_parameters": {"service": "RasMan", "path": "C:\\ProgramData\\VPN"},
        **fields,
    }
    response = api.post(f"/ai-sessions/{session_id}/suggested-fixes", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_console_is_served_with_the_content_security_policy(stack: Stack) -> None:
    response = httpx.get(f"{stack.console_url}/", timeout=10)
    assert response.status_code == 200
    assert "<title>FlowPilot console</title>" in response.text
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    # No inline script, no inline handler, no style attribute: the CSP would block them.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.text)
    assert not re.search(r"\son[a-z]+=|\sstyle=", response.text)


def test_resolve_from_the_list_posts_the_edited_note_and_verifies_the_status(page: Any, stack: Stack) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Sessions", level=1)).to_be_visible()
    page.get_by_text("Start a session").click()
    page.get_by_label("Title").fill("VPN drops every 10 minutes")
    page.get_by_label("Problem").fill("The customer's VPN disconnects every 10 minutes.")
    page.get_by_label("ConnectWise ticket number").fill("1001")
    page.get_by_role("button", name="Create session").click()
    expect(page.get_by_role("heading", name="VPN drops every 10 minutes", level=1)).to_be_visible()

    page.get_by_label("Kind").select_option("tried")
    page.get_by_label("What happened").fill("Reinstalled the VPN client")
    page.get_by_label("Result (optional)").fill("Stable for 30 minutes")
    page.get_by_role("button", name="Add evidence").click()
    expect(page.locator(".evidence-list")).to_contain_text("Reinstalled the VPN client")

    page.get_by_role("button", name="Preview resolution note").click()
    note = page.get_by_label("Note")
    expect(note).to_have_value(re.compile("Reinstalled the VPN client"))
    expect(page.locator(".preview-meta")).to_contain_text("Freshly written")
    page.get_by_role("button", name="Preview resolution note").click()
    expect(page.locator(".preview-meta")).to_contain_text("From cache")
    screenshot(page, "session-preview")

    edited = "We reinstalled your VPN client.\n\nThe connection has been stable for 30 minutes (edited in the console)."
    note.fill(edited)
    expect(page.locator("#note-rendered")).to_contain_text("edited in the console")
    page.get_by_role("button", name="Confirm & post").click()
    outcome = page.get_by_role("status").filter(has_text="Resolved")
    expect(outcome).to_contain_text("now in status Resolved")
    expect(page.locator(".ledger")).to_contain_text("Resolved")
    screenshot(page, "session-resolved")

    notes = stack.simulator_ticket(1001)["notes"]
    assert len(notes) == 1
    assert notes[0]["text"].startswith(edited)
    assert notes[0]["detailDescriptionFlag"] and notes[0]["resolutionFlag"] and not notes[0]["internalAnalysisFlag"]
    assert stack.simulator_ticket(1001)["ticket"]["status"]["name"] == "Resolved"

    page.goto("/#/?status=resolved")
    expect(page.get_by_role("link", name="VPN drops every 10 minutes").first).to_be_visible()
    screenshot(page, "sessions")


def test_escalate_posts_an_internal_note_and_lands_in_the_queue(page: Any, stack: Stack, api: httpx.Client) -> None:
    session_id = new_session(api, "Exchange mailbox migration stuck", 1002)
    add_evidence(api, session_id, "confirmed", "The move request is stuck at 95%")
    add_evidence(api, session_id, "hypothesis", "A corrupt item in the Recoverable Items folder")
    open_session(page, session_id)
    page.get_by_role("button", name="Preview escalation package").click()
    note = page.get_by_label("Note")
    expect(note).to_have_value(re.compile("## Current hypothesis"))
    page.get_by_role("button", name="Confirm & post").click()
    expect(page.get_by_role("status").filter(has_text="Escalated")).to_contain_text("Escalated - Tier 2")

    notes = stack.simulator_ticket(1002)["notes"]
    assert len(notes) == 1 and notes[0]["internalAnalysisFlag"] is True
    assert not notes[0]["detailDescriptionFlag"] and not notes[0]["resolutionFlag"]

    page.get_by_role("link", name="Escalation queue").click()
    expect(page.get_by_role("heading", name="Escalation queue", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Exchange mailbox migration stuck")).to_be_visible()
    screenshot(page, "escalation-queue")


def test_a_silently_rejected_status_shows_expected_and_actual_and_what_to_do(
    page: Any, stack: Stack, api: httpx.Client
) -> None:
    session_id = new_session(api, "Printer offline on 3rd floor", 1003)
    open_session(page, session_id)
    page.get_by_role("button", name="Preview resolution note").click()
    expect(page.get_by_label("Note")).not_to_be_empty()
    page.get_by_role("button", name="Confirm & post").click()
    outcome = page.get_by_role("status").filter(has_text="did not change")
    expect(outcome.locator(".expected-status")).to_have_text("Resolved (#5)")
    expect(outcome.locator(".actual-status")).to_have_text("New (#1)")
    expect(outcome).to_contain_text("What to do next")
    expect(outcome).to_contain_text("will not be posted twice")
    screenshot(page, "session-502")
    assert len(stack.simulator_ticket(1003)["notes"]) == 1
    assert api.get(f"/ai-sessions/{session_id}").json()["status"] == "active"


def test_scanner_warnings_block_the_post_until_acknowledged(page: Any, stack: Stack, api: httpx.Client) -> None:
    session_id = new_session(api, "New starter laptop", 1006)
    open_session(page, session_id)
    page.get_by_role("button", name="Preview resolution note").click()
    expect(page.get_by_label("Note")).not_to_be_empty()
    page.get_by_label("Note").fill("Laptop set up.\nThe admin password: Tr0ub4dor-Xq9!zLm was rotated.")
    page.get_by_role("button", name="Confirm & post").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Line 2, column 21")
    expect(alert).to_contain_text("password")
    expect(page.get_by_role("status").filter(has_text="Not posted")).to_be_visible()
    assert stack.simulator_ticket(1006)["notes"] == []
    screenshot(page, "session-warnings")

    page.get_by_role("button", name="Post anyway").click()
    expect(page.get_by_role("status").filter(has_text="Resolved")).to_contain_text("now in status Resolved")
    assert len(stack.simulator_ticket(1006)["notes"]) == 1


def test_a_post_on_a_closed_session_shows_the_409_reason(page: Any, api: httpx.Client) -> None:
    session_id = new_session(api, "Shared drive mapping")  # no ticket: closes locally
    open_session(page, session_id)
    page.get_by_role("button", name="Preview resolution note").click()
    expect(page.get_by_label("Note")).not_to_be_empty()
    page.get_by_role("button", name="Confirm & post").click()
    expect(page.get_by_role("status").filter(has_text="Resolved locally")).to_contain_text("nothing was sent")
    page.get_by_role("button", name="Confirm & post").click()
    outcome = page.get_by_role("status").filter(has_text="Not posted")
    expect(outcome).to_contain_text("409")
    expect(outcome.locator(".reason")).to_contain_text("already")


def test_a_slow_psa_answers_202_and_the_console_polls_until_verified(
    page: Any, stack: Stack, api: httpx.Client
) -> None:
    session_id = new_session(api, "Outlook prompts for password", 1005)
    stack.set_faults(1005, latency=1.2)  # several calls of 1.2 s: longer than WRITEBACK_WAIT_SECONDS=3
    try:
        open_session(page, session_id)
        page.get_by_role("button", name="Preview resolution note").click()
        expect(page.get_by_label("Note")).not_to_be_empty()
        page.get_by_role("button", name="Confirm & post").click()
        expect(page.get_by_role("status").filter(has_text="Still working")).to_be_visible(timeout=20_000)
        expect(page.get_by_role("status").filter(has_text="Resolved")).to_contain_text(
            "now in status Resolved", timeout=60_000
        )
    finally:
        stack.set_faults(1005, latency=0.0)


def test_hostile_evidence_is_shown_as_text_and_runs_nothing(page: Any, api: httpx.Client) -> None:
    problem = "<b>bold?</b> <img src=x onerror=window.__pwned=1>"
    session_id = new_session(api, "Hostile chat transcript", problem=problem)
    open_session(page, session_id)
    payloads = [
        "<img src=x onerror=\"window.__pwned='img'\">",
        "<script>window.__pwned='script'</script>",
        "[click me](javascript:window.__pwned='link') <svg onload=\"window.__pwned='svg'\"></svg>",
    ]
    for text in payloads:
        page.get_by_label("Kind").select_option("tried")
        page.get_by_label("What happened").fill(text)
        page.get_by_role("button", name="Add evidence").click()
        expect(page.locator(".evidence-list")).to_contain_text(text)
    expect(page.locator(".problem")).to_have_text(problem)

    page.get_by_role("button", name="Preview resolution note").click()
    expect(page.get_by_label("Note")).to_have_value(re.compile("onerror"))
    # Raw HTML in the note reads as the text it is; the link survives without its javascript: URL.
    expect(page.locator("#note-rendered")).to_contain_text("<img src=x onerror=")
    expect(page.locator("#note-rendered")).to_contain_text("click me")
    rendered = page.locator("#note-rendered")
    assert rendered.locator("img, script, svg, [onerror], [onload]").count() == 0
    for href in rendered.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))"):
        assert not (href or "").lower().startswith("javascript:")
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0


def test_the_whole_flow_by_keyboard_alone(page: Any, stack: Stack, api: httpx.Client) -> None:
    session_id = new_session(api, "Keyboard only: Wi-Fi keeps dropping", 1001)
    add_fix(api, session_id, "Restart the WLAN service")
    page.goto("/")

    def tab_to(role: str, name: str, limit: int = 80) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(
                "([role, name]) => { const el = document.activeElement; const label = el.labels && el.labels[0] "
                "? el.labels[0].textContent : el.textContent; const tag = el.tagName.toLowerCase(); "
                "const r = tag === 'a' ? 'link' : tag === 'textarea' ? 'textbox' : tag; "
                "return r === role && label.trim() === name; }",
                [role, name],
            ):
                return
        raise AssertionError(f"Tab never reached the {role} {name!r}")

    tab_to("link", "Keyboard only: Wi-Fi keeps dropping")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Keyboard only: Wi-Fi keeps dropping", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="Run once")).to_be_visible()
    tab_to("button", "Run once")
    page.keyboard.press("Enter")
    expect(page.locator(".rendered pre")).to_contain_text("Restart-Service -Name 'RasMan'")
    expect(page.get_by_role("button", name="Copy script")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".copy-result")).to_have_text("Copied")
    assert "Restart-Service" in page.evaluate("navigator.clipboard.readText()")

    tab_to("button", "Preview resolution note")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Note")).to_have_value(re.compile("Ran suggested fix"))
    tab_to("textbox", "Note")
    page.keyboard.press("Control+End")
    page.keyboard.type("\n\nConfirmed by keyboard.")
    tab_to("button", "Confirm & post")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Resolved")).to_contain_text("now in status Resolved")
    assert stack.simulator_ticket(1001)["notes"][-1]["text"].startswith(page.get_by_label("Note").input_value())


def test_fix_decisions_draft_dismiss_and_build_template(page: Any, api: httpx.Client) -> None:
    session_id = new_session(api, "Decisions on suggested fixes")
    add_fix(api, session_id, "Draft me")
    open_session(page, session_id)
    page.get_by_role("button", name="Preview resolution note").click()
    expect(page.locator(".preview-meta")).to_contain_text("state version")
    page.get_by_role("button", name="Save as draft template").click()
    expect(page.locator(".rendered pre")).to_contain_text("Clear-Cache -Path 'C:\\ProgramData\\VPN'")
    expect(page.locator(".rendered")).to_contain_text("Draft template")
    # The decision changed the session: the preview offers to regenerate, and the new one is fresh.
    expect(page.locator(".stale")).to_contain_text("changed after this preview")
    page.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".preview-meta")).to_contain_text("Freshly written")
    expect(page.locator(".stale")).to_be_hidden()
    screenshot(page, "session-fixes")

    add_fix(api, session_id, "Dismiss me")
    page.reload()
    page.get_by_role("group", name="Decision on Dismiss me").get_by_role("button", name="Dismiss").click()
    expect(page.locator(".fix", has_text="Dismiss me")).to_contain_text("dismissed")

    fix = add_fix(api, session_id, "Build me")
    page.reload()
    page.get_by_role("group", name="Decision on Build me").get_by_role("button", name="Build a template").click()
    page.wait_for_url(re.compile(rf"/script-templates/builder\?session_id={session_id}&fix_id={fix['id']}"))


def test_settings_never_show_stored_keys_and_save_both_forms(page: Any, stack: Stack, api: httpx.Client) -> None:
    before = api.get("/account-settings").json()
    page.goto("/#/settings")
    expect(page.get_by_role("heading", name="PSA connection")).to_be_visible()
    expect(page.locator(".connection-state")).to_contain_text("connected")
    expect(page.get_by_label("Company id")).to_have_value(before["psa"]["company_id"])
    expect(page.get_by_label("Public key")).to_have_value("")
    expect(page.get_by_label("Private key")).to_have_value("")
    expect(page.get_by_label("Resolved status id")).to_have_value("5")
    expect(page.get_by_label("Resolved status per board")).to_have_value("2 = 25")
    screenshot(page, "settings")

    page.get_by_label("Public key").fill("demo-public")
    page.get_by_label("Private key").fill("demo-private")
    page.get_by_role("button", name="Save connection").click()
    expect(page.get_by_text("Connection saved.")).to_be_visible()
    expect(page.get_by_label("Private key")).to_have_value("")
    page.get_by_label("Escalated status per board").fill("2 = 23\n1 = 6")  # the API keeps boards in order
    page.get_by_role("button", name="Save status mapping").click()
    expect(page.get_by_text("Status mapping saved.")).to_be_visible()
    after = api.get("/account-settings").json()["preferences"]
    assert after["cw_escalated_status_ids_by_board"] == {"2": 23, "1": 6}
    assert after["cw_resolved_status_id"] == before["preferences"]["cw_resolved_status_id"]

    page.reload()
    expect(page.get_by_label("Escalated status per board")).to_have_value("1 = 6\n2 = 23")
    assert "demo-private" not in page.content()
    page.get_by_label("Resolved status id").fill("0")  # the API's 422 detail list, shown as its message
    page.get_by_role("button", name="Save status mapping").click()
    expect(page.locator(".form-message .error")).to_contain_text("cw_resolved_status_id")
    page.get_by_label("Resolved status id").fill("five")  # refused before sending
    page.get_by_role("button", name="Save status mapping").click()
    expect(page.locator(".form-message .error")).to_contain_text('Resolved status id: "five" is not a number')
    assert api.get("/account-settings").json()["preferences"]["cw_resolved_status_id"] == 5


def test_the_account_picker_sets_the_dev_account(page: Any, api: httpx.Client) -> None:
    new_session(api, "Only acct-dev sees this")
    page.goto("/")
    expect(page.get_by_role("link", name="Only acct-dev sees this").first).to_be_visible()
    accounts: list[str] = []

    def record(request: Any) -> None:
        if "/ai-sessions" in request.url:
            accounts.append(request.headers.get("x-dev-account-id", ""))

    page.on("request", record)
    page.get_by_label("Account").select_option("acct-halo")
    expect(page.get_by_text("No sessions here yet.")).to_be_visible()
    assert accounts and accounts[-1] == "acct-halo"
    page.reload()  # the choice is kept
    expect(page.get_by_label("Account")).to_have_value("acct-halo")


@pytest.mark.parametrize("width", [390, 1280])
def test_no_horizontal_scroll_and_no_serious_axe_violations(
    browser: Any, stack: Stack, api: httpx.Client, width: int
) -> None:
    session_id = new_session(api, "Layout check: a long title " + "that goes on " * 6, 1001)
    add_evidence(api, session_id, "tried", "A very long token " + "x" * 150, "Result " + "y" * 80)
    add_fix(api, session_id, "A fix with a long script", ai_drafted_script="Write-Output '" + "z" * 300 + "'")
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=stack.console_url)
    page = context.new_page()
    try:
        screens = {
            "sessions": "/",
            "queue": "/#/?status=escalated",
            "session": f"/#/sessions/{session_id}",
            "settings": "/#/settings",
        }
        for name, url in screens.items():
            page.goto(url)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            if name == "session":
                page.get_by_role("button", name="Preview resolution note").click()
                expect(page.get_by_label("Note")).not_to_be_empty()
                page.get_by_label("Note").fill("password: Tr0ub4dor-Xq9!zLm")
                page.get_by_role("button", name="Confirm & post").click()
                expect(page.get_by_role("alert")).to_contain_text("Line 1")
            else:
                page.wait_for_load_state("networkidle")
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} at {width}px scrolls sideways by {overflow}px"
            assert run_axe(page) == [], f"axe on {name} at {width}px"
            if width == 390:
                screenshot(page, f"mobile-{name}")
    finally:
        context.close()


def transferred(page: Any, url: str, then: Any = None) -> int:
    """Bytes (bodies + headers) the page fetches to show `url` in a fresh context, then after `then(page)`."""
    responses: list[Any] = []
    page.on("response", lambda response: responses.append(response))
    page.goto(url)
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    if then is not None:
        then(page)
    page.wait_for_load_state("networkidle")
    return sum(r.request.sizes()["responseBodySize"] + r.request.sizes()["responseHeadersSize"] for r in responses)


def test_first_load_is_under_150_kb(browser: Any, stack: Stack, api: httpx.Client) -> None:
    session_id = new_session(api, "Weigh the first load", 1001)
    add_fix(api, session_id, "A fix to weigh")

    def preview(page: Any) -> None:  # the markdown renderer and sanitizer load with the first preview
        page.get_by_role("button", name="Preview resolution note").click()
        expect(page.locator("#note-rendered")).not_to_be_empty()

    sizes = {}
    for name, url, then in (
        ("sessions list", "/", None),
        ("session page", f"/#/sessions/{session_id}", None),
        ("session page + first preview", f"/#/sessions/{session_id}", preview),
    ):
        context = browser.new_context(base_url=stack.console_url)
        sizes[name] = transferred(context.new_page(), url, then)
        context.close()
    print(f"\nfirst load transferred: {', '.join(f'{k} {v / 1024:.1f} KB' for k, v in sizes.items())}")
    assert sizes["sessions list"] < 150 * 1024, sizes
    assert sizes["session page"] < 150 * 1024, sizes
    assert sizes["session page + first preview"] > sizes["session page"]  # the renderer really loads on demand


def test_stored_evidence_is_listed_in_order_with_more_on_request(page: Any, api: httpx.Client) -> None:
    session_id = new_session(api, "Printer offline on the third floor")
    for n in range(27):
        add_evidence(api, session_id, "tried", f"Power-cycled printer attempt {n:02d}")
    open_session(page, session_id)
    items = page.locator(".evidence-list > li")
    expect(items).to_have_count(25)
    expect(items.first).to_contain_text("attempt 00")
    page.get_by_role("button", name="More evidence").click()
    expect(items).to_have_count(27)
    expect(items.last).to_contain_text("attempt 26")
    expect(page.get_by_role("button", name="More evidence")).to_be_hidden()


def test_a_new_preview_asks_before_replacing_edits_and_each_kind_has_its_own_summary(
    page: Any, api: httpx.Client
) -> None:
    open_session(page, new_session(api, "Edits belong to the engineer", 1004))
    page.get_by_role("button", name="Preview resolution note").click()
    note = page.get_by_label("Note")
    expect(note).not_to_have_value("")
    note.fill("My carefully edited note.")
    page.get_by_label("Resolution summary (optional)").fill("Reinstalled the VPN client")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Preview escalation package").click()
    expect(note).to_have_value("My carefully edited note.")  # kept: the engineer said no
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Preview escalation package").click()
    expect(page.get_by_label("Escalation reason (optional)")).to_have_value("")
    expect(note).not_to_have_value("My carefully edited note.")


def test_a_second_tab_follows_the_running_write_back_and_a_stale_tab_says_the_true_status(
    page: Any, stack: Stack, api: httpx.Client
) -> None:
    session_id = new_session(api, "Posted from two tabs", 1006)
    notes_before = len(stack.simulator_ticket(1006)["notes"])  # the stack (and its tickets) serve the module
    stack.set_faults(1006, latency=1.5)  # the write-back outlives the endpoint's wait: a 202, then polling
    other = page.context.new_page()
    for tab in (page, other):
        open_session(tab, session_id)
        tab.get_by_role("button", name="Preview resolution note").click()
        expect(tab.get_by_label("Note")).not_to_have_value("")
    page.get_by_role("button", name="Confirm & post").click()
    expect(page.locator(".outcome")).to_contain_text("Still working")
    other.get_by_role("button", name="Confirm & post").click()
    # The second tab got a 409 naming the running write-back, and follows it to its end.
    for tab in (page, other):
        expect(tab.locator(".outcome")).to_contain_text("Resolved", timeout=60_000)
    assert len(stack.simulator_ticket(1006)["notes"]) == notes_before + 1
    stack.set_faults(1006, latency=0.0)

    stale = page.context.new_page()
    open_session(stale, new_session(api, "Closed in another tab", 1005))
    stale.get_by_role("button", name="Preview resolution note").click()
    expect(stale.get_by_label("Note")).not_to_have_value("")
    closed_id = stale.url.rsplit("/", 1)[-1]
    assert api.post(f"/ai-sessions/{closed_id}/resolution-note/post", json={"markdown": "Done."}).status_code == 200
    stale.get_by_role("button", name="Confirm & post").click()
    expect(stale.locator(".outcome")).to_contain_text("already resolved")
    expect(stale.locator(".outcome")).not_to_contain_text("already active")


@pytest.mark.parametrize(
    ("status", "headers", "error", "shown", "hidden"),
    [
        (
            502,
            {},
            {
                "code": "psa_unavailable",
                "message": "The PSA failed after storing the note.",
                "details": {"note_id": "5009", "note_kept": True},
            },
            ["did not finish", "(note 5009) and will not be posted twice"],
            "Not posted",
        ),
        (
            503,
            {"Retry-After": "17"},
            {"code": "psa_unavailable", "message": "The PSA is unavailable.", "details": {}},
            ["Not posted", "Nothing more was sent; try again in 17 seconds."],
            "did not finish",
        ),
    ],
    ids=["note-kept", "retry-after"],
)
def test_a_failure_says_whether_the_note_is_on_the_ticket_and_when_to_retry(
    page: Any,
    api: httpx.Client,
    status: int,
    headers: dict[str, str],
    error: dict[str, Any],
    shown: list[str],
    hidden: str,
) -> None:
    """The answer is faked at the browser (these failures need a PSA to fail at one exact moment)."""
    open_session(page, new_session(api, "A failure worded honestly", 1004))
    page.get_by_role("button", name="Preview resolution note").click()
    expect(page.get_by_label("Note")).not_to_have_value("")
    page.route(
        "**/resolution-note/post",
        lambda route: route.fulfill(
            status=status, headers=headers, content_type="application/json", json={"error": error}
        ),
    )
    page.get_by_role("button", name="Confirm & post").click()
    outcome = page.locator(".outcome")
    for text in shown:
        expect(outcome).to_contain_text(text)
    expect(outcome).not_to_contain_text(hidden)

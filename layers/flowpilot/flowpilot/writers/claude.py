"""The Claude writer: previews written by Claude Sonnet through the `anthropic` SDK (Messages API).

It owns the model call and everything around it: the only import of `anthropic` in the project (lazy,
inside methods: importing it costs ~1.2 s, paid only by a process that writes with Claude), prompt
caching, the time budget, retries, the mapping of SDK errors to our errors, and the check of what the
model returned. Nothing half-written is returned, so nothing half-written gets cached.

Time budget: API Gateway gives a request 30 s. The whole call, retries and waits included, gets
`settings().anthropic_timeout_seconds` (20 s by default); each attempt gets what is left of it. The SDK's
own retries are switched off (`max_retries=0`) because the SDK sleeps for whatever `retry-after` the
API sends, however long; here a retry (at most `anthropic_max_retries`) happens only when its wait
plus a useful attempt still fits in the budget, otherwise the caller gets a 503 whose `Retry-After`
is the API's.

Errors: rate limits (429), overload (529), other 5xx, 408/409 and connection failures become
`UpstreamUnavailable(code="model_unavailable")` (503, Retry-After from the response, else 10 s); a
timeout becomes `UpstreamTimeout(code="model_timeout")` (504); any other 4xx (400 bad request,
401 bad key, 403, 404 unknown model, 413) becomes `BadGateway(code="model_rejected_request")` (502):
the request or our configuration is wrong, so telling the client to retry would be misleading.
Output that is empty, cut off (`stop_reason` other than end_turn/stop_sequence) or, for an escalation
package, without exactly the five headings in order becomes
`UpstreamUnavailable(code="model_output_invalid")`.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from flowpilot import resets
from flowpilot.config import settings
from flowpilot.errors import BadGateway, FlowPilotError, UpstreamTimeout, UpstreamUnavailable
from flowpilot.models import Evidence, PreviewKind, PreviewUsage, Session
from flowpilot.observability import timed_call
from flowpilot.writers.base import ESCALATION_HEADINGS, WrittenDocument, has_escalation_sections
from flowpilot.writers.prompt import Prompt, build_prompt

if TYPE_CHECKING:
    import anthropic
    import httpx2
    from anthropic.types import Message

# ~8,000 characters: a full package fits, and a posted note may hold at most 20,000.
MAX_OUTPUT_TOKENS = 2048
DEFAULT_RETRY_AFTER_SECONDS = 10
# A retry is only worth starting with at least this long left for the model to answer.
MIN_ATTEMPT_SECONDS = 5.0
_COMPLETE_STOP_REASONS = frozenset({"end_turn", "stop_sequence"})
_RETRYABLE_STATUSES = frozenset({408, 409, 429})  # and every 5xx, 529 "overloaded" included
_HEADING_LINE = re.compile(r"^##(?!#)[ \t]*(?P<title>.*?)[ \t#]*$", re.MULTILINE)
_CANONICAL_HEADINGS = {heading.casefold(): heading for heading in ESCALATION_HEADINGS}
# Every live writer, so a SnapStart restore can drop their SDK clients (see `reset_caches`).
_writers: weakref.WeakSet[ClaudeWriter] = weakref.WeakSet()


@resets.register
def reset_caches() -> None:
    """Drop every writer's SDK client and its connection pool; the next model call makes a fresh one.

    Run after a SnapStart restore (`flowpilot.snapstart`): a pool from before the snapshot is shared by
    every restored copy and may hold connections the network has long forgotten.
    """
    for writer in list(_writers):
        writer._client = None


class ClaudeWriter:
    """Writes previews with Claude. Arguments left out come from the environment, as the SDK reads it:
    `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`, and `settings().anthropic_model`."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        model: str | None = None,
        http_client: httpx2.Client | None = None,
        base_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model or settings().anthropic_model
        self._api_key = api_key
        self._http_client = http_client
        self._base_url = base_url
        self._sleep = sleep
        self._client: anthropic.Anthropic | None = None
        _writers.add(self)

    @property
    def name(self) -> str:
        return f"claude:{self.model}"

    def write(self, kind: PreviewKind, session: Session, evidence: Sequence[Evidence]) -> WrittenDocument:
        prompt = build_prompt(kind, session, evidence)
        message = self._create(prompt)
        return WrittenDocument(
            markdown=_checked_markdown(kind, message),
            writer=self.name,
            usage=PreviewUsage(
                input_tokens=message.usage.input_tokens,
                output_tokens=message.usage.output_tokens,
                cache_read_input_tokens=message.usage.cache_read_input_tokens or 0,
                cache_creation_input_tokens=message.usage.cache_creation_input_tokens or 0,
            ),
            trimmed_evidence=prompt.trimmed_evidence,
        )

    def _sdk(self) -> anthropic.Anthropic:
        if self._client is None:
            import anthropic  # lazy: see the module docstring

            self._client = anthropic.Anthropic(
                api_key=self._api_key,
                base_url=self._base_url,
                http_client=self._http_client,
                timeout=settings().anthropic_timeout_seconds,
                max_retries=0,  # retries are ours, within the time budget
            )
        return self._client

    def _create(self, prompt: Prompt) -> Message:
        import anthropic

        config = settings()
        deadline = time.monotonic() + config.anthropic_timeout_seconds
        for attempt in range(config.anthropic_max_retries + 1):
            try:
                with timed_call("ModelCallLatency", {"model": self.model}) as call:
                    call["attempt"] = attempt + 1
                    message = self._sdk().messages.create(
                        model=self.model,
                        max_tokens=MAX_OUTPUT_TOKENS,
                        # Cached: the rules (same for every preview of a kind) and the session (same for
                        # every preview of a session); only the evidence after them changes.
                        system=[{"type": "text", "text": prompt.system, "cache_control": {"type": "ephemeral"}}],
                        messages=[
                            {
                                "role": "user",
                                "content": [
                                    {
                                        "type": "text",
                                        "text": prompt.session_block,
                                        "cache_control": {"type": "ephemeral"},
                                    },
                                    {"type": "text", "text": prompt.evidence_block},
                                ],
                            }
                        ],
                        timeout=max(deadline - time.monotonic(), 1.0),
                    )
                    call["stop_reason"] = message.stop_reason
                return message
            except anthropic.AnthropicError as error:
                failure, wait = _classify(error, attempt)
                out_of_attempts = attempt == config.anthropic_max_retries
                if wait is None or out_of_attempts or time.monotonic() + wait + MIN_ATTEMPT_SECONDS > deadline:
                    raise failure from error
                self._sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")


def _classify(error: Exception, attempt: int) -> tuple[FlowPilotError, float | None]:
    """Our error for an SDK error, and how long to wait before retrying (None: do not retry)."""
    import anthropic

    backoff = min(0.5 * 2**attempt, 4.0)
    if isinstance(error, anthropic.APITimeoutError):
        return UpstreamTimeout("The AI model did not answer in time.", code="model_timeout"), backoff
    if isinstance(error, anthropic.APIConnectionError):
        return _unavailable("The AI model could not be reached.", None), backoff
    if isinstance(error, anthropic.APIStatusError):
        status = error.status_code
        if status in _RETRYABLE_STATUSES or status >= 500:
            retry_after = _retry_after_seconds(error.response.headers)
            failure = _unavailable(f"The AI model is unavailable (HTTP {status}).", retry_after)
            if error.response.headers.get("x-should-retry") == "false":
                return failure, None
            return failure, retry_after if retry_after is not None else backoff
        details = {"upstream_status": status, "request_id": error.request_id}
        message = f"The AI model refused the request (HTTP {status}); check the API key and model."
        return BadGateway(message, code="model_rejected_request", details=details), None
    return BadGateway(f"The AI model call failed: {type(error).__name__}.", code="model_error"), None


def _unavailable(message: str, retry_after: float | None) -> UpstreamUnavailable:
    seconds = math.ceil(retry_after) if retry_after is not None else DEFAULT_RETRY_AFTER_SECONDS
    return UpstreamUnavailable(message, code="model_unavailable", retry_after=seconds)


def _retry_after_seconds(headers: httpx2.Headers) -> float | None:
    """The API's requested wait: `retry-after-ms`, or `retry-after` in seconds or as an HTTP date."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if seconds > 0:
            return seconds
    return None


def _checked_markdown(kind: PreviewKind, message: Message) -> str:
    """The model's text, or `model_output_invalid` when it is empty, cut off, or (escalation) malformed."""
    text = _unfenced("".join(block.text for block in message.content if block.type == "text").strip())
    if message.stop_reason not in _COMPLETE_STOP_REASONS or not text:
        raise _invalid_output(f"The AI model's answer was incomplete (stop reason {message.stop_reason}).")
    if kind is PreviewKind.escalation_package:
        text = _HEADING_LINE.sub(_canonical_heading, text)
        if not has_escalation_sections(text):
            raise _invalid_output("The AI model's escalation package did not have the five required sections.")
    return text + "\n"


def _invalid_output(message: str) -> UpstreamUnavailable:
    # A fresh attempt usually comes out right, so the client is told to retry soon.
    return UpstreamUnavailable(message, code="model_output_invalid", retry_after=1)


def _unfenced(text: str) -> str:
    """The document without a ``` fence wrapped around all of it (a common model habit)."""
    lines = text.splitlines()
    if len(lines) >= 2 and lines[0].startswith("```") and lines[-1].strip() == "```":
        return "\n".join(lines[1:-1]).strip()
    return text


def _canonical_heading(match: re.Match[str]) -> str:
    """A required heading written with a typographic apostrophe or other capitals, spelled as required."""
    title = " ".join(match.group("title").replace("\u2019", "'").split())
    return _CANONICAL_HEADINGS.get(f"## {title}".casefold(), match.group(0))

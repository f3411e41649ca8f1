"""`make invoke`: `sam local invoke` without Docker. Runs a function's real handler on a sample event, with the
function's environment from template.yaml, against the running local stack (its moto) or, when nothing
answers, a fresh in-process one; prints each response as one JSON line on stdout, logs on stderr.

    python -m devstack.invoke [--function SessionsFunction] events/sessions__post_ai_sessions.json [...]

The function defaults to the one template.yaml routes the event's `routeKey` to. The events' JWT claims are
the caller, as behind API Gateway's authorizer. `env_local()` writes
`events/env.local.json`, the same environment for the real `sam local invoke --env-vars` where Docker runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from devstack import aws, loopback, template
from devstack.demo import default_api
from devstack.stack import free_port

ENV_LOCAL_PATH = template.ROOT / "events" / "env.local.json"
DEFAULT_MOTO_ENDPOINT = "http://127.0.0.1:3001"  # `make dev`'s MOTO_PORT default


def function_for(event: dict[str, Any]) -> str:
    route_key = str(event.get("routeKey", ""))
    for route in template.routes():
        if route.route_key == route_key:
            return route.function
    raise SystemExit(f"no route {route_key!r} in template.yaml: name the function with --function")


def function_environment(logical_id: str, endpoint_url: str) -> dict[str, str]:
    """What the function sees on the local stack: the stack's names, then the function's own variables."""
    env = aws.environment(endpoint_url=endpoint_url)
    own = template.functions()[logical_id].environment
    env.update({k: str(v) for k, v in own.items() if k not in {"FLOWPILOT_STAGE"}})
    env["POWERTOOLS_METRICS_DISABLED"] = "true"
    return env


def env_local(endpoint_url: str = DEFAULT_MOTO_ENDPOINT) -> dict[str, dict[str, str]]:
    """`sam local invoke --env-vars` file: every function pointed at the local stack's moto and names."""
    env = aws.environment(endpoint_url=endpoint_url)
    # Only what the template declares: SAM passes nothing else into the container.
    wanted = {k: v for k, v in env.items() if not k.startswith(("AWS_", "POWERTOOLS_DEV", "POWERTOOLS_TRACE"))}
    wanted["FLOWPILOT_AWS_ENDPOINT_URL"] = endpoint_url
    return {"Parameters": dict(sorted(wanted.items()))}


def running_stack(api: str) -> str | None:
    """The moto endpoint of the stack answering at `api`, or None when nothing (or something else) answers."""
    try:
        about = httpx.get(f"{api}/__devstack", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    endpoint = about.get("moto_endpoint") if isinstance(about, dict) else None
    return str(endpoint) if endpoint else None


def _load(path: Path) -> dict[str, Any]:
    try:
        event = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot read the event {path}: {error}") from error
    if not isinstance(event, dict):
        raise SystemExit(f"the event {path} is not a JSON object")
    return event


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("events", nargs="*", type=Path, help="event files (events/*.json)")
    parser.add_argument("--function", "-f", help="logical id in template.yaml (default: from the routeKey)")
    parser.add_argument("--api", default=default_api(), help="the running stack (default: from API_PORT)")
    parser.add_argument("--write-env-local", action="store_true", help=f"rewrite {ENV_LOCAL_PATH.name} and exit")
    args = parser.parse_args(argv)
    if args.write_env_local:
        ENV_LOCAL_PATH.write_text(json.dumps(env_local(), indent=2) + "\n")
        return 0
    if not args.events:
        parser.error("give at least one event file (events/*.json)")
    events = [(path, _load(path)) for path in args.events]
    functions = template.functions()
    if args.function and args.function not in functions:
        raise SystemExit(f"no function {args.function!r}; template.yaml has {', '.join(sorted(functions))}")
    with ExitStack() as cleanup:
        cleanup.enter_context(loopback.loopback_psa())  # the stack's PSA is the simulator, on loopback
        endpoint = running_stack(args.api)
        if endpoint is not None:
            print(f"Using the local stack at {args.api} (moto {endpoint})", file=sys.stderr)
        else:
            from devstack.stack import LocalStack

            print(f"Nothing answers at {args.api}: starting a fresh in-process stack (API_PORT)", file=sys.stderr)
            stack = LocalStack(with_api=False, moto_port=free_port())  # never make dev's MOTO_PORT
            stack.start()
            cleanup.callback(stack.stop)
            endpoint = stack.moto_url
        failed = False
        for path, event in events:
            logical_id = args.function or function_for(event)
            handler = functions[logical_id].handler
            aws.apply_environment(function_environment(logical_id, endpoint))
            _logs_to_stderr(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"))
            print(f"Invoking {handler} ({logical_id}) with {path}", file=sys.stderr)
            result, error_type = aws.invoke_function(logical_id, event)
            failed = failed or error_type is not None
            print(json.dumps(result), flush=True)
    return 1 if failed else 0


def _logs_to_stderr(level: str) -> None:
    """As `sam local invoke` does: the function's log lines on stderr, the response alone on stdout."""
    from flowpilot.observability import logger

    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)
    logger.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())

"""AWS emulated by moto, built from template.yaml: tables, the write-back state machine, Lambda dispatch.

Used by the local stack (against moto's threaded server) and by the tests (in-process `mock_aws`).
Lambda tasks of the executed state machine are dispatched to the functions' real `lambda_handler`s.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any
from unittest import mock

import boto3
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from devstack import template
from devstack.events import LambdaContext

MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}

Handler = Callable[[dict[str, Any], Any], Any]
_load_lock = threading.RLock()


def environment(endpoint_url: str | None = None) -> dict[str, str]:
    """Process environment for running every function locally, from the template's own variables."""
    env: dict[str, str] = {}
    for function in template.functions().values():
        env.update(function.environment)
    env |= {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": template.LOCAL_REGION,
        "AWS_REGION": template.LOCAL_REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
    }
    env["FLOWPILOT_STAGE"] = template.LOCAL_STAGE
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env


def apply_environment(env: dict[str, str]) -> None:
    os.environ.update(env)
    reset_process_caches()


def reset_process_caches() -> None:
    """Forget settings, cached clients and answers (after the environment or the moto backend changed)."""
    from flowpilot import resets

    resets.reset_all()


def create_tables() -> None:
    dynamodb = boto3.client("dynamodb", region_name=template.LOCAL_REGION)
    for spec in template.tables().values():
        dynamodb.create_table(**spec["create"])
        if spec["ttl"]:
            dynamodb.update_time_to_live(TableName=spec["create"]["TableName"], TimeToLiveSpecification=spec["ttl"])


def create_state_machines() -> dict[str, str]:
    """Every state machine in the template, with its real ASL and DefinitionSubstitutions; name → ARN."""
    sfn = boto3.client("stepfunctions", region_name=template.LOCAL_REGION)
    arns = {}
    for logical_id, res in template.resources("AWS::Serverless::StateMachine").items():
        props = res["Properties"]
        definition = (template.ROOT / props["DefinitionUri"]).read_text()
        for key, value in template.resolve(props.get("DefinitionSubstitutions", {})).items():
            definition = definition.replace("${" + key + "}", str(value))
        arns[logical_id] = sfn.create_state_machine(
            name=template.physical_name(logical_id),
            definition=definition,
            roleArn=f"arn:aws:iam::{template.LOCAL_ACCOUNT}:role/flowpilot-local-sfn",
            type=props.get("Type", "STANDARD"),
        )["stateMachineArn"]
    return arns


def load_function_module(logical_id: str) -> ModuleType:
    """Import functions/<dir>/app.py under a unique module name (every function's module is called app)."""
    function = template.functions()[logical_id]
    module_file, _ = function.handler.rsplit(".", 1)
    name = f"flowpilot_functions.{function.code_dir.name}.{module_file}"
    # Concurrent first requests (threaded server, concurrency tests) must not see a half-run module.
    with _load_lock:
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, function.code_dir / f"{module_file}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module


def handler(logical_id: str) -> Handler:
    function = template.functions()[logical_id]
    return getattr(load_function_module(logical_id), function.handler.rsplit(".", 1)[1])


def handlers() -> dict[str, Handler]:
    return {logical_id: handler(logical_id) for logical_id in template.functions()}


def _dispatch_table() -> dict[str, str]:
    """Physical function name and ARN → logical id."""
    table = {}
    for logical_id in template.functions():
        table[template.physical_name(logical_id)] = logical_id
        table[template.function_arn(logical_id)] = logical_id
    return table


def invoke_function(logical_id: str, payload: Any) -> tuple[Any, str | None]:
    """Run a function's real handler as Lambda would; returns (result, error type or None)."""
    try:
        return handler(logical_id)(payload, LambdaContext(function_name=template.physical_name(logical_id))), None
    except Exception as error:
        return {
            "errorType": type(error).__name__,
            "errorMessage": str(error),
            "stackTrace": traceback.format_exception(error)[-3:],
        }, type(error).__name__


# One lock per process: the in-process harness and the threaded server share moto's one set of backends.
_dynamodb_lock = threading.RLock()


@contextmanager
def atomic_dynamodb() -> Iterator[None]:
    """Serve each emulated DynamoDB request whole, as DynamoDB does: no request sees another one half done.

    moto checks a write's condition and applies it without a lock, so two threads can both pass the same
    condition; it applies an update's SET actions one attribute at a time; and it serialises a read's items
    after its backend call returned, so a concurrent write can change an item under the serialiser
    ("dictionary changed size during iteration"). The lock covers each request from parsing to its response
    body (`DynamoHandler.call_action`, used by both `mock_aws` and the threaded server), and the backend's item
    operations for callers that skip the HTTP layer.
    """
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    names = (
        "put_item",
        "update_item",
        "delete_item",
        "transact_write_items",
        "batch_write_item",
        "get_item",
        "query",
        "scan",
        "transact_get_items",
        "batch_get_item",
    )
    targets: list[tuple[type, str]] = [(DynamoHandler, "call_action")]
    targets += [(DynamoDBBackend, name) for name in names if hasattr(DynamoDBBackend, name)]

    def locked(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def whole(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _dynamodb_lock:
                return original(self, *args, **kwargs)

        return whole

    patches = [mock.patch.object(owner, name, locked(getattr(owner, name))) for owner, name in targets]
    for patch in patches:
        patch.start()
    try:
        yield
    finally:
        for patch in reversed(patches):
            patch.stop()


@contextmanager
def lambda_dispatch() -> Iterator[None]:
    """Make moto's Lambda (the state machine's tasks) run our real handlers in-process."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    table = _dispatch_table()

    def invoke(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        logical_id = table.get(function_name) or table.get(function_name.split(":")[-1])
        if logical_id is None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "ResourceNotFound", "errorMessage": function_name}).encode()
        payload = json.loads(body) if body else {}
        result, error_type = invoke_function(logical_id, payload)
        if error_type:
            response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(result).encode()

    lock_metrics()
    with mock.patch.object(LambdaSimpleBackend, "invoke", invoke):
        yield


def lock_metrics() -> None:
    """Make the functions' shared EMF metrics store safe between threads (idempotent).

    A Lambda runs one invocation at a time; here an API handler and a state-machine step run at once in one
    process, where an unguarded flush can fail a step that committed.
    """
    from flowpilot.observability import metrics

    if not isinstance(metrics.provider, _LockedEMFProvider):
        metrics.provider.__class__ = _LockedEMFProvider


class _LockedEMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF provider with its metric store behind one lock (no state of its own: swapped in)."""

    _lock = threading.RLock()

    def add_metric(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            super().add_metric(*args, **kwargs)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        with self._lock:
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)


class _NoSleep:
    """The `time` module, except that `sleep` returns at once (moto's Retry backoff really sleeps)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None


def running_executions(machines: list[str]) -> list[str]:
    sfn = boto3.client("stepfunctions", region_name=template.LOCAL_REGION)
    return [
        e["executionArn"]
        for arn in machines
        for e in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
    ]


def drain_executions(machines: list[str], timeout: float = 20.0) -> None:
    """Wait for every execution to end (drift re-checks outlive the request that started them)."""
    deadline = time.monotonic() + timeout
    while (running := running_executions(machines)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if running:
        raise RuntimeError(f"executions still running after {timeout:g} s: {running}")


def forget_ended_executions() -> int:
    """Drop ended executions from moto's memory (each keeps its parsed program and full history); long fault
    campaigns call it between plans. Running ones stay. Returns how many were dropped."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    dropped = 0
    for account in stepfunctions_parser_backends.values():
        for backend in account.values():
            for machine in backend.state_machines:
                kept = [e for e in machine.executions if getattr(e.status, "value", e.status) == "RUNNING"]
                dropped += len(machine.executions) - len(kept)
                machine.executions[:] = kept
    return dropped


@contextmanager
def emulated_aws() -> Iterator[list[str]]:
    """AWS for tests and benchmarks, in-process: moto built from template.yaml, the real ASL executed with its
    Lambda tasks dispatched to the real handlers, atomic conditional writes, and Retry backoff that does not
    wait. The caller sets the environment first (see `environment`). Yields the state machines' ARNs; on exit
    waits for every execution to end.
    """
    from moto import mock_aws
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    no_sleep = mock.patch.object(retrier_decl, "time", _NoSleep())
    with mock_aws(config=MOTO_CONFIG), lambda_dispatch(), atomic_dynamodb(), no_sleep:  # type: ignore[call-overload]
        reset_process_caches()
        create_tables()
        machines = list(create_state_machines().values())
        yield machines
        drain_executions(machines)
    reset_process_caches()

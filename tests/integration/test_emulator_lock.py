"""The emulated DynamoDB serves each request whole, as DynamoDB does: a read never sees an item mid-write.

moto serialises a GetItem's item (`dynamo_to_dict`) after its backend call has returned; without a lock over the
whole request, another thread's UpdateItem can grow that item's map meanwhile and the read fails with
"dictionary changed size during iteration" (a 500 from the emulator, seen by the 1,000-plan campaign). These
tests hammer one item with readers and writers through boto3, against the in-process harness and against moto's
threaded server as `make dev` runs it, and require every request to succeed with a consistent item.
"""

from __future__ import annotations

import sys
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config

from devstack import aws, template
from devstack.stack import free_port

WRITERS, READERS, UPDATES_PER_WRITER, READS_PER_READER = 2, 3, 25, 15
# A big item from the start: serialising it takes long enough that writes land mid-read on the old lock.
PRELOADED = 150
KEY = {"PK": {"S": "ACCOUNT#acct-lock"}, "SK": {"S": "RACE#1"}}


def _table_name() -> str:
    return template.physical_name("SessionsTable")


def _hammer(dynamodb: Any) -> tuple[list[BaseException], int]:
    """Writers each grow the item's map and list; readers read it whole. Returns (errors, entries seen last)."""
    table = _table_name()
    preloaded = [f"p{n}" for n in range(PRELOADED)]
    item = {
        **KEY,
        "steps": {"M": {name: {"S": "x" * 20} for name in preloaded}},
        "entries": {"L": [{"S": name} for name in preloaded]},
    }
    dynamodb.put_item(TableName=table, Item=item)
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS + READERS)

    def write(writer: int) -> None:
        start.wait()
        for n in range(UPDATES_PER_WRITER):
            dynamodb.update_item(
                TableName=table,
                Key=KEY,
                UpdateExpression="SET steps.#k = :v, entries = list_append(entries, :one)",
                ExpressionAttributeNames={"#k": f"w{writer}-{n}"},
                ExpressionAttributeValues={":v": {"S": "x" * 20}, ":one": {"L": [{"N": str(n)}]}},
            )

    def read(_: int) -> None:
        start.wait()
        for _ in range(READS_PER_READER):
            item = dynamodb.get_item(TableName=table, Key=KEY, ConsistentRead=True)["Item"]
            # One UpdateItem sets both: a whole-request lock never lets a read see one without the other.
            assert len(item["steps"]["M"]) == len(item["entries"]["L"]), "a read saw half an update"

    def guarded(fn: Any, n: int) -> None:
        try:
            fn(n)
        except BaseException as error:  # collected, so one failure does not hide behind a hung barrier
            errors.append(error)
            start.abort()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads interleave every few bytecodes: a race shows in one run, not one in three
    try:
        with ThreadPoolExecutor(max_workers=WRITERS + READERS) as pool:
            for n in range(WRITERS):
                pool.submit(guarded, write, n)
            for n in range(READERS):
                pool.submit(guarded, read, n)
    finally:
        sys.setswitchinterval(interval)
    final = dynamodb.get_item(TableName=table, Key=KEY, ConsistentRead=True)["Item"]
    return errors, len(final["steps"]["M"])


def _client(endpoint_url: str | None = None) -> Any:
    config = Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=WRITERS + READERS)
    return boto3.client("dynamodb", region_name=template.LOCAL_REGION, endpoint_url=endpoint_url, config=config)


def test_in_process_harness_serves_reads_and_writes_whole(aws_env: dict[str, str]) -> None:
    errors, entries = _hammer(_client())
    assert errors == [], f"{len(errors)} requests failed, first: {errors[0]!r}"
    assert entries == PRELOADED + WRITERS * UPDATES_PER_WRITER


@pytest.fixture
def threaded_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's threaded server with the lock `devstack.stack` installs, and the template's tables."""
    from moto.server import ThreadedMotoServer

    for key, value in aws.environment().items():
        monkeypatch.setenv(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    try:
        with aws.atomic_dynamodb():
            aws.create_tables()
            yield url
    finally:
        # moto's backends are the process's: later tests must not find these tables.
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()
        server.stop()
        aws.reset_process_caches()


def test_threaded_server_serves_reads_and_writes_whole(threaded_moto: str) -> None:
    errors, entries = _hammer(_client(threaded_moto))
    assert errors == [], f"{len(errors)} requests failed, first: {errors[0]!r}"
    assert entries == PRELOADED + WRITERS * UPDATES_PER_WRITER

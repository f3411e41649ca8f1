"""`python -m devstack`: start the local stack and serve until Ctrl-C or SIGTERM.

Ports: `--port` / `API_PORT` (default 3000) for the HTTP API and the console, `--moto-port` / `MOTO_PORT`
(default 3001) for moto. On a stop signal the API stops accepting, requests in flight get up to
`--drain-seconds` to finish, then everything stops; a second signal stops at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from devstack.server import DRAIN_SECONDS
from devstack.stack import LocalStack


def main() -> None:
    parser = argparse.ArgumentParser(description="FlowPilot Writeback local stack")
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT") or 3000))
    parser.add_argument("--moto-port", type=int, default=int(os.environ.get("MOTO_PORT") or 3001))
    parser.add_argument("--drain-seconds", type=float, default=DRAIN_SECONDS)
    args = parser.parse_args()
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=logging.DEBUG if level == "DEBUG" else logging.INFO,
        format="%(asctime)s %(name)-13s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(130)  # a second Ctrl-C: the operator does not want to wait for the drain
        stop.set()

    # Explicit handlers: a process started in the background may inherit an ignored SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    stack = LocalStack(api_port=args.port, moto_port=args.moto_port, log_level=level)
    try:
        stack.start()
    except OSError as error:
        stack.stop(drain_seconds=0)
        sys.exit(f"The local stack could not start: {error}")
    print(stack.describe(), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        print("\nStopping the local stack (requests in flight may finish; Ctrl-C again to force)…", flush=True)
        stack.stop(drain_seconds=args.drain_seconds)
        print("Stopped.", flush=True)


if __name__ == "__main__":
    main()

"""`python -m devstack`: start the local stack and serve until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import threading

from devstack.stack import LocalStack


def main() -> None:
    parser = argparse.ArgumentParser(description="FlowPilot Writeback local stack")
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT") or 3000))
    args = parser.parse_args()
    stack = LocalStack(api_port=args.port)
    stack.start()
    print(stack.describe(), flush=True)
    stop = threading.Event()
    # Explicit handlers: a process started in the background may inherit an ignored SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        print("\nStopping the local stack…", flush=True)
        stack.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    main()

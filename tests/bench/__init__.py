"""Benchmarks of FlowPilot Writeback: `python -m tests.bench` (or `make bench`).

Measures cold start (handler import vs `import boto3`), AWS/PSA/model requests and in-process latency
per route on moto, and how list pages and preview prompts grow with the account and the evidence. Prints
a table and writes `bench-report.json` at the repo root. Numbers only: nothing here is a pytest test and
no test asserts on timings. Nothing leaves the machine: moto runs in-process, the ConnectWise simulator
listens on 127.0.0.1, the model is an `httpx2.MockTransport`, and a socket guard refuses anything else.
"""

"""`python -m tests.bench`: run every benchmark, print the tables, write bench-report.json at the repo root."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COLD_START_BUDGET = 1.5
COLD_START_STRETCH = 1.3
CACHED_PREVIEW_DDB_BUDGET = 2
ADD_EVIDENCE_WRITES_BUDGET = 1
# 4 before the write-back read its note back (DESIGN §5: every fact a 200 claims is read back): ticket, note
# post, note read-back, status change, ticket re-fetch. The same for every provider, Halo's token aside.
WRITEBACK_PSA_BUDGET = 5
DRIFT_PSA_BUDGET = 1


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _ms(value: float) -> str:
    return f"{value:.1f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=9, help="fresh processes per cold-start target (min 7)")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per route")
    parser.add_argument("--writebacks", type=int, default=10, help="timed write-back posts per kind")
    parser.add_argument("--growth-iterations", type=int, default=20, help="timed list calls per page and size")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-report.json")
    parser.add_argument("--quick", action="store_true", help="few iterations: checks the harness, not numbers")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.iterations, args.writebacks, args.growth_iterations = 3, 4, 2, 3
    elif args.rounds < 7:
        parser.error("--rounds must be at least 7 (the cold start is a median over >= 7 fresh processes)")
    return args


# --- cold start ----------------------------------------------------------------------------------


def cold_start_section(rounds: int) -> tuple[dict[str, Any], list[Any], str]:
    from tests.bench import coldstart
    from tests.bench.report import Budget, section, table

    _progress(f"cold start: {rounds} fresh processes per target")
    results = coldstart.measure(rounds)
    budgets = []
    rows = []
    for label, r in results.items():
        ratio = r.ratio_to_boto3 or 0.0
        if label == coldstart.BOTO3:
            rows.append([label, _ms(r.median_s * 1000), _ms(r.min_s * 1000), f"{ratio:.2f}", "1.00", "baseline", ""])
            continue
        if label == coldstart.FLOOR:
            min_ratio = r.min_s / results[coldstart.BOTO3].min_s
            floor_row = [_ms(r.median_s * 1000), _ms(r.min_s * 1000), f"{ratio:.2f}", f"{min_ratio:.2f}"]
            rows.append([label, *floor_row, "not a function", ""])
            continue
        budget = Budget(
            name=f"cold start {label}",
            limit=f"<= {COLD_START_BUDGET}x boto3",
            measured=f"{ratio:.2f}x ({r.median_s * 1000:.0f} ms vs {results[coldstart.BOTO3].median_s * 1000:.0f} ms)",
            holds=ratio <= COLD_START_BUDGET,
        )
        budgets.append(budget)
        min_ratio = r.min_s / results[coldstart.BOTO3].min_s
        stretch = "holds" if ratio <= COLD_START_STRETCH else "-"
        rows.append(
            [
                label,
                _ms(r.median_s * 1000),
                _ms(r.min_s * 1000),
                f"{ratio:.2f}",
                f"{min_ratio:.2f}",
                budget.status,
                stretch,
            ]
        )
    text = section(
        f"Cold start: handler module import, median of {rounds} fresh processes",
        table(
            [
                "target",
                "median ms",
                "min ms",
                "x boto3",
                "x (mins)",
                f"budget <= {COLD_START_BUDGET}x",
                f"stretch <= {COLD_START_STRETCH}x",
            ],
            rows,
        ),
        [
            "import timed inside the child with perf_counter; bytecode caches warm; as AWS runs it: only the",
            "layer's and the runtime's packages importable (python -I -S, see tests/bench/lambda_site.py), each",
            "function's template environment plus Lambda's variables with Tracing: Active (_X_AMZN_TRACE_ID,",
            "AWS_XRAY_*); the budget is on medians; x (mins), the ratio of the fastest runs, is less sensitive",
            "to other load on the machine",
        ],
    )
    baseline_ms = results[coldstart.BOTO3].median_s * 1000
    floor_ms = results[coldstart.FLOOR].median_s * 1000 - baseline_ms
    excess = [
        r.median_s * 1000 - baseline_ms
        for label, r in results.items()
        if label not in {coldstart.BOTO3, coldstart.FLOOR}
    ]
    text += (
        f"\n  room over boto3 alone at {COLD_START_BUDGET}x: {baseline_ms * (COLD_START_BUDGET - 1):.0f} ms; the design"
        f" floor takes {floor_ms:.0f} ms of it\n  (tests/bench/floor_handler.py: boto3, one pydantic model,"
        f" Powertools' Logger and Metrics, no product code);\n  handlers' excess over boto3:"
        f" {min(excess):.0f}-{max(excess):.0f} ms"
    )
    _progress(f"stage attribution: {rounds} fresh processes per function")
    attribution = coldstart.attribute(rounds)
    text += "\n\n" + _attribution_table(attribution)
    _progress("import profiles (-X importtime) of every function")
    profiles: dict[str, Any] = {label: coldstart.import_profile(label) for label in results}
    text += "\n\n" + _profile_table(profiles)
    report = {
        "rounds": rounds,
        "targets": {
            label: {
                "median_ms": round(r.median_s * 1000, 2),
                "min_ms": round(r.min_s * 1000, 2),
                "samples_ms": [round(s * 1000, 2) for s in r.samples_s],
                "ratio_to_boto3": round(r.ratio_to_boto3 or 0.0, 3),
            }
            for label, r in results.items()
        },
        "import_profiles": profiles,
        "attribution": {
            label: {
                "unit_ms": round(a.unit_ms, 2),
                "total_ratio": round(a.total_ratio, 3),
                "stages": {
                    stage: {"ms": round(ms, 2), "ratio": round(ms / a.unit_ms, 3)} for stage, ms in a.stages_ms.items()
                },
            }
            for label, a in attribution.items()
        },
    }
    return report, budgets, text


def _attribution_table(attribution: dict[str, Any]) -> str:
    """What each 0.1x of every function's ratio is: its import split into stages, as x boto3."""
    from tests.bench import coldstart
    from tests.bench.report import section, table

    labels = list(attribution)
    stages: list[str] = []
    for a in attribution.values():
        stages += [stage for stage in a.stages_ms if stage not in stages and stage != coldstart.APP_STAGE]
    stages.append(coldstart.APP_STAGE)
    rows = [
        [stage, *(f"{a.ratios[stage]:+.2f}" if stage in a.ratios else "-" for a in attribution.values())]
        for stage in stages
    ]
    rows.append(["total, x boto3", *(f"{a.total_ratio:.2f}" for a in attribution.values())])
    floor_stages = [s for s in stages if s.startswith(("boto3", "pydantic", "Powertools package"))]
    floor = [sum(a.ratios.get(s, 0.0) for s in floor_stages) for a in attribution.values()]
    return section(
        "What each 0.1x is: every function's import in stages (x its own boto3 stage)",
        table(["stage", *(label.removesuffix("Function") for label in labels)], rows),
        [
            "stages imported in this order in one fresh process each (median of the rounds); a module's own",
            "imports are charged to the first stage that needs them, so the stages add up to the import",
            f"boto3 + pydantic + Powertools' package: {min(floor):.2f}-{max(floor):.2f}x, before any code of ours",
        ],
    )


TOP_PACKAGES = 8


def _other(profile: dict[str, Any], shown: list[str]) -> float:
    return float(profile["total_self_ms"]) - sum(profile["by_package_ms"].get(p, 0.0) for p in shown)


def _profile_table(profiles: dict[str, Any]) -> str:
    from tests.bench.report import section, table

    labels = list(profiles)
    packages: list[str] = []
    for profile in profiles.values():
        for package in list(profile["by_package_ms"])[:TOP_PACKAGES]:
            if package not in packages:
                packages.append(package)
    rows = [
        [package, *(_ms(profiles[label]["by_package_ms"].get(package, 0.0)) for label in labels)]
        for package in packages
    ]
    rows.append(["other packages", *(_ms(_other(profiles[label], packages)) for label in labels)])
    rows.append(["total (self time)", *(_ms(profiles[label]["total_self_ms"]) for label in labels)])
    short = [label.removesuffix("Function") for label in labels]
    chains: dict[str, str] = {}
    for label in labels[1:]:
        for package, chain in profiles[label]["pulled_in_by"].items():
            if profiles[labels[0]]["by_package_ms"].get(package, 0.0) == 0.0:
                chains.setdefault(package, chain)
    baseline = float(profiles[labels[0]]["total_self_ms"]) or 1.0
    rows.append(
        ["excess over boto3, x boto3", *(f"{profiles[label]['total_self_ms'] / baseline - 1:+.2f}" for label in labels)]
    )
    notes = [
        "-X importtime self time (ms) by top-level package, one run each; the log itself adds overhead;",
        "a package's share of the ratio is its ms divided by boto3 alone's total",
    ]
    notes += [f"{package}: {chain}" for package, chain in chains.items()]
    return section(
        "Where the import time goes (every function, beside boto3 alone)",
        table(["package", *short], rows),
        notes,
    )


# --- moto: routes and growth ---------------------------------------------------------------------


def moto_section(args: argparse.Namespace) -> tuple[dict[str, Any], list[Any], str]:
    from devstack import template
    from tests.bench import growth, harness, routes
    from tests.bench.report import Budget, latency_ms, section, show_range, table

    guard = harness.LoopbackOnly()
    _progress("moto stack: routes, write-backs, growth (handler logs go to /dev/null)")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    with guard.active(), harness.stdout_to_devnull(), harness.moto_stack() as stack:
        route_results, warmup = routes.run_routes(stack, args.iterations, args.writebacks)
        timings["routes_s"], clock = time.perf_counter() - clock, time.perf_counter()
        _progress("growth: list pages with 100 and 10,000 sessions")
        lists = growth.list_growth(stack, args.growth_iterations)
        timings["list_growth_s"], clock = time.perf_counter() - clock, time.perf_counter()
        _progress("growth: preview misses with 10 and 5,000 evidence items")
        misses = growth.preview_miss_growth(stack)
        timings["preview_miss_growth_s"], clock = time.perf_counter() - clock, time.perf_counter()
    prompts = growth.prompt_growth()
    timings["prompt_growth_s"] = time.perf_counter() - clock

    by_key = {(r.route, r.variant): r for r in route_results}
    budgets: list[Budget] = []
    texts: list[str] = []

    # Routes table
    rows = []
    for r in route_results:
        s = r.samples
        lat = latency_ms([x.seconds for x in s])
        other: Counter[str] = Counter()
        for x in s:
            other.update(x.other_aws())
        other_text = " ".join(f"{name.split(':', 1)[1]} {count / len(s):g}" for name, count in sorted(other.items()))
        rows.append(
            [
                r.route,
                r.variant,
                len(s),
                _ms(lat["p50_ms"]),
                _ms(lat["p95_ms"]),
                show_range([x.ddb(harness.DDB_READ_OPS) for x in s]),
                show_range([x.ddb(harness.DDB_WRITE_OPS) for x in s]),
                show_range([x.query_items() for x in s]) if any(x.queries for x in s) else "-",
                other_text or "-",
                show_range([x.psa for x in s]),
                show_range([x.model for x in s]),
            ]
        )
    measured_routes = {r.route for r in route_results}
    unmeasured = [route.route_key for route in template.routes() if route.route_key not in measured_routes]
    notes = [
        "DDB R / W: DynamoDB read / write requests per call (a range when calls differ); other AWS: mean per call",
        "Q items: items DynamoDB Queries read per call (ScannedCount); ranges grow with what the loop adds:",
        "  evidence per session (a preview miss reads it all) and fixes per session (adding a fix lists them all",
        "  to find the undecided one it supersedes)",
        "write-back rows count the API function and the state machine's steps together (details below);",
        "  their latency includes the handler's polling of the ledger (50 ms, doubling) until the answer",
    ]
    if unmeasured:
        notes.append(f"NOT MEASURED (new routes?): {', '.join(unmeasured)}")
    texts.append(
        section(
            "Routes on moto, in-process through each function's real lambda_handler (warm)",
            table(
                ["route", "variant", "n", "p50 ms", "p95 ms", "DDB R", "DDB W", "Q items", "other AWS", "PSA", "model"],
                rows,
                left=2,
            ),
            notes,
        )
    )

    # Write-back details
    wb_rows = []
    wb_before: list[int] = []
    wb_after: list[int] = []
    for r in route_results:
        if not any(x.steps for x in r.samples):
            continue
        s = r.samples
        api_ddb = [x.ddb(sender=harness.API_THREAD) for x in s]
        step_ddb = [x.ddb() - x.ddb(sender=harness.API_THREAD) for x in s]
        before = [x.psa_before_answer() for x in s]
        after = [x.psa_after_answer() for x in s]
        if r.variant == "PSA, verified":
            wb_before += before
            wb_after += after
        wb_rows.append(
            [
                r.route.split("/")[-2] + "/post",
                r.variant,
                len(s),
                show_range(before),
                show_range(after),
                show_range(api_ddb),
                show_range(step_ddb),
                " ".join(dict.fromkeys(step.action for step in s[-1].steps)),
            ]
        )
    wb_rows.append(
        [
            "resolution-note/post",
            "first of the process (statuses not cached)",
            1,
            warmup["psa_before_answer"],
            warmup["psa_after_answer"],
            "",
            "",
            "",
        ]
    )
    texts.append(
        section(
            "Write-back: PSA calls (ConnectWise simulator) and DynamoDB requests by who sent them",
            table(
                ["post", "variant", "n", "PSA to answer", "PSA after", "DDB api", "DDB steps", "steps run"],
                wb_rows,
                left=2,
            ),
            [
                "PSA to answer: requests of the steps up to the verified answer; PSA after: the drift re-check",
                "first write-back's PSA requests: " + ", ".join(warmup["psa_requests"]),
                "the API function's DynamoDB requests include its polling of the ledger until the answer",
            ],
        )
    )
    budgets.append(
        Budget(
            "write-back PSA calls to the verified answer (statuses cached)",
            f"<= {WRITEBACK_PSA_BUDGET}",
            f"{max(wb_before)} (resolve and escalate, {len(wb_before)} posts)",
            max(wb_before) <= WRITEBACK_PSA_BUDGET,
        )
    )
    budgets.append(
        Budget(
            "write-back drift re-check PSA calls",
            f"= {DRIFT_PSA_BUDGET}",
            show_range(wb_after),
            min(wb_after) == max(wb_after) == DRIFT_PSA_BUDGET,
        )
    )

    # Preview and evidence budgets
    for kind in ("resolution-note", "escalation-package"):
        hits = by_key[(f"POST /ai-sessions/{{session_id}}/{kind}/preview", "hit")].samples
        ddb = max(x.ddb() for x in hits)
        model = max(x.model for x in hits)
        budgets.append(
            Budget(
                f"cached {kind} preview: DynamoDB requests",
                f"<= {CACHED_PREVIEW_DDB_BUDGET}",
                f"{ddb} ({len(hits)} hits)",
                ddb <= CACHED_PREVIEW_DDB_BUDGET,
            )
        )
        budgets.append(Budget(f"cached {kind} preview: model calls", "0", str(model), model == 0))
    evidence = by_key[("POST /ai-sessions/{session_id}/evidence", "")].samples
    writes = max(x.ddb(harness.DDB_WRITE_OPS) for x in evidence)
    budgets.append(
        Budget(
            "add-evidence: DynamoDB write requests",
            f"<= {ADD_EVIDENCE_WRITES_BUDGET}",
            f"{writes} ({len(evidence)} calls)",
            writes <= ADD_EVIDENCE_WRITES_BUDGET,
        )
    )

    # Growth: list pages
    list_rows = [
        [
            f"{row['sessions_in_account']:,}",
            row["page"],
            row["iterations"],
            row["queries_per_page"],
            row["items_read_max"],
            row["scanned_max"],
            _ms(row["p50_ms"]),
            _ms(row["p95_ms"]),
        ]
        for row in lists
    ]
    texts.append(
        section(
            f"Growth: GET /ai-sessions, page size {growth.PAGE_SIZE}",
            table(
                ["sessions", "page", "n", "queries", "items read", "scanned", "p50 ms", "p95 ms"],
                list_rows,
                left=2,
            ),
            [
                "items read / scanned: the Query's Count / ScannedCount (max over calls)",
                "moto's Query walks the whole partition in Python, so its latency grows with the account;",
                "  DynamoDB reads only the items counted above",
            ],
        )
    )
    for size in growth.LIST_SIZES:
        worst = max(row["scanned_max"] for row in lists if row["sessions_in_account"] == size)
        budgets.append(
            Budget(
                f"list page reads with {size:,} sessions",
                f"<= {growth.PAGE_SIZE + 1} items",
                f"{worst} items",
                worst <= growth.PAGE_SIZE + 1,
            )
        )

    # Growth: prompts
    prompt_rows = [
        [
            p["kind"],
            f"{p['evidence_items']:,}",
            f"{p['estimated_tokens']:,}",
            f"{p['budget_tokens']:,}",
            f"{p['trimmed_evidence']:,}",
            _ms(p["build_ms"]),
        ]
        for p in prompts
    ]
    miss_rows = [
        [
            m["kind"],
            f"{m['evidence_items']:,}",
            m["dynamodb_requests"],
            m["evidence_queries"],
            f"{m['evidence_items_read']:,}",
            m["model_calls"],
            f"{m['model_request_chars']:,}",
            _ms(m["latency_ms"]),
        ]
        for m in misses
    ]
    texts.append(
        section(
            "Growth: preview prompt size (build_prompt, estimated at 4 characters per token)",
            table(["kind", "evidence", "est. tokens", "budget", "trimmed", "build ms"], prompt_rows),
        )
        + "\n\n"
        + section(
            "Growth: preview miss through the route (Claude writer, mock Messages API)",
            table(
                ["kind", "evidence", "DDB req", "queries", "items read", "model", "request chars", "ms"],
                miss_rows,
            ),
            [
                "request chars: size of the Messages API request body the model received",
                "items read: a miss reads every evidence item of the session, whatever the prompt keeps;",
                "  the 5,000-item latency is mostly moto serialising the Query pages",
            ],
        )
    )
    for kind in sorted({p["kind"] for p in prompts}):
        small, large = (
            next(p for p in prompts if p["kind"] == kind and p["evidence_items"] == n) for n in growth.EVIDENCE_SIZES
        )
        budgets.append(
            Budget(
                f"{kind} prompt with {large['evidence_items']:,} evidence items",
                f"<= {large['budget_tokens']:,} tokens",
                f"{large['estimated_tokens']:,} (vs {small['estimated_tokens']:,} with {small['evidence_items']})",
                large["estimated_tokens"] <= large["budget_tokens"],
            )
        )

    budgets.append(
        Budget(
            "network: nothing but loopback",
            "0 refused",
            f"{len(guard.blocked)} refused, {guard.allowed_connections} loopback connections",
            not guard.blocked,
            "; ".join(guard.blocked[:5]),
        )
    )
    report = {
        "routes": [routes.summarize(r) for r in route_results],
        "unmeasured_routes": unmeasured,
        "writeback_first_of_process": warmup,
        "list_growth": lists,
        "prompt_growth": prompts,
        "preview_miss_growth": misses,
        "network": {"refused": guard.blocked, "loopback_connections": guard.allowed_connections},
        "section_seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    return report, budgets, "\n\n".join(texts)


# --- the built layer ------------------------------------------------------------------------------


def built_layer_section() -> tuple[dict[str, Any], list[Any], str]:
    """Whether the layer `sam build` left under .aws-sam would let anything import the X-Ray SDK."""
    from tests.bench import built_layer
    from tests.bench.report import Budget, section, table

    layers = built_layer.layer_dirs()
    if not layers:
        row = ["(no sam build output)", "not available", "run `sam build` first"]
        return {"layers": {}}, [], section("Built layer", table(["layer", "X-Ray SDK", "note"], [row]))
    found = {logical_id: built_layer.forbidden_in(path) for logical_id, path in layers.items()}
    budgets = [
        Budget(
            f"built layer {logical_id}: no {', '.join(built_layer.FORBIDDEN)}",
            "not importable",
            ", ".join(names) + " importable" if names else "not importable",
            not names,
        )
        for logical_id, names in found.items()
    ]
    rows = [[logical_id, ", ".join(names) or "absent", str(layers[logical_id])] for logical_id, names in found.items()]
    text = section("Built layer (.aws-sam/build)", table(["layer", "forbidden found", "path"], rows))
    return {"layers": found}, budgets, text


# --- benchmarks other modules add ----------------------------------------------------------------

# Each is `function() -> {figure name: value}` (flat), printed as a table and kept in the report under the
# function's name; a module that is not there yet gives a "not available" row, so the bench still runs.
OPTIONAL_SECTIONS = (
    ("preview miss: bounded evidence reads", "tests.bench.preview_miss", "preview_miss_figures"),
    ("secret scanner corpus", "tests.bench.scanner_corpus", "corpus_figures"),
    ("write-back answer latency p50/p95", "tests.bench.writeback_latency", "writeback_latency_figures"),
)


def _figure(value: Any) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def optional_sections() -> tuple[dict[str, Any], list[Any], str]:
    from tests.bench.report import section, table

    reports: dict[str, Any] = {}
    budgets: list[Any] = []
    texts: list[str] = []
    missing: list[list[str]] = []
    for title, module_name, function_name in OPTIONAL_SECTIONS:
        try:
            figures = getattr(importlib.import_module(module_name), function_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise  # the module is there but something it imports is not: a real failure
            missing.append([title, f"{module_name}.{function_name}", "not available"])
            continue
        except AttributeError:
            missing.append([title, f"{module_name}.{function_name}", "not available"])
            continue
        _progress(title)
        report: dict[str, Any] = figures()
        reports[function_name] = report
        rows = [[name, _figure(value)] for name, value in report.items()]
        texts.append(section(f"{title} ({module_name})", table(["figure", "value"], rows)))
    if missing:
        texts.append(section("Benchmarks not available yet", table(["benchmark", "hook", "status"], missing)))
    return reports, budgets, "\n\n".join(texts)


def provider_calls_section(posts: int) -> tuple[dict[str, Any], list[Any], str]:
    from tests.bench import provider_calls
    from tests.bench.report import Budget, section, table

    _progress(f"PSA calls per write-back: {len(provider_calls.PROVIDERS)} providers, {posts} warm posts per kind")
    figures = provider_calls.provider_call_figures(posts)
    rows = []
    budgets = []
    notes = []
    for provider, result in figures.items():
        for kind in ("resolve", "escalate"):
            warm, first = result["warm"][kind], result["first"][kind]
            rows.append(
                [
                    provider,
                    kind,
                    str(warm["psa_calls_to_answer"]),
                    str(warm["psa_calls_after_answer"]),
                    str(first["psa_calls_to_answer"]),
                    _ms(warm["post_to_answer_median_s"] * 1000),
                ]
            )
        warm_max = max(result["warm"][k]["psa_calls_to_answer"] for k in ("resolve", "escalate"))
        budgets.append(
            Budget(
                f"{provider}: PSA calls to the verified answer (configuration cached)",
                f"<= {WRITEBACK_PSA_BUDGET}",
                str(warm_max),
                warm_max <= WRITEBACK_PSA_BUDGET,
            )
        )
        config = result["config_requests_whole_run"]
        notes.append(
            f"{provider} warm resolve: "
            + ", ".join(result["warm"]["resolve"]["requests"])
            + (f"; per process: {config} over {result['writebacks']} write-backs" if config else "")
        )
    text = section(
        "PSA calls per write-back, per provider (simulators, real handlers and state machine)",
        table(["provider", "kind", "to answer", "after", "first post", "median ms"], rows, left=2),
        notes,
    )
    return {"provider_calls": figures}, budgets, text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    from tests.bench.report import section, table

    load_before = os.getloadavg()
    cold_report, cold_budgets, cold_text = cold_start_section(args.rounds)
    cold_seconds = time.perf_counter() - started
    layer_report, layer_budgets, layer_text = built_layer_section()
    moto_report, moto_budgets, moto_text = moto_section(args)
    moto_report["section_seconds"] = {"cold_start_s": round(cold_seconds, 1), **moto_report["section_seconds"]}
    clock = time.perf_counter()
    extra_report, extra_budgets, extra_text = optional_sections()
    moto_report["section_seconds"]["optional_s"] = round(time.perf_counter() - clock, 1)
    clock = time.perf_counter()
    calls_report, calls_budgets, calls_text = provider_calls_section(max(2, args.writebacks // 2))
    moto_report["section_seconds"]["provider_calls_s"] = round(time.perf_counter() - clock, 1)
    extra_report.update(calls_report)
    extra_text = "\n\n".join(t for t in (extra_text, calls_text) if t)
    budgets = cold_budgets + layer_budgets + moto_budgets + extra_budgets + calls_budgets
    runtime = time.perf_counter() - started

    budget_rows = [[b.name, b.limit, b.measured, b.status] for b in budgets]
    missed = [b for b in budgets if not b.holds]
    header = (
        f"FlowPilot Writeback benchmarks  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  "
        f"Python {platform.python_version()}  {platform.machine()}  {os.cpu_count()} CPUs  "
        f"load {load_before[0]:.1f}  runtime {runtime:.0f} s"
    )
    timing_text = "  ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in moto_report["section_seconds"].items())
    budget_text = section(
        f"Budgets: {len(budgets) - len(missed)} hold, {len(missed)} MISSED",
        table(["budget", "limit", "measured", "status"], budget_rows, left=4),
    )
    print("\n\n".join(t for t in [header, cold_text, layer_text, moto_text, extra_text, budget_text] if t))
    print(f"\nsections: {timing_text}")

    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "runtime_seconds": round(runtime, 1),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load_before],
        "settings": {
            "rounds": args.rounds,
            "iterations": args.iterations,
            "writebacks": args.writebacks,
            "growth_iterations": args.growth_iterations,
            "quick": args.quick,
        },
        "budgets": [b.as_dict() for b in budgets],
        "cold_start": cold_report,
        "built_layer": layer_report,
        **moto_report,
        **extra_report,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nreport written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Secret scanner: recall and false-positive rate over tests/scanner_corpus, and scan time on 20,000 characters.

`corpus_figures()` returns flat figures: the corpus counts, recall and false-positive rate (whole corpus, tuned
part, held-out part), then the median scan time of a realistic 20,000-character note (corpus lines repeated)
and of the slowest adversarial 20,000-character input (tests.scanner_corpus.adversarial_inputs). The unit test
holds the recall and false-positive targets; time is measured only here.
`python -m tests.bench.scanner_corpus` prints them.
"""

from __future__ import annotations

import statistics
import time

from flowpilot.scanner import scan
from tests.scanner_corpus import MAX_TEXT, adversarial_inputs, figures, load

ROUNDS = 5


def _median_ms(text: str, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        scan(text)
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)


def realistic_note() -> str:
    """20,000 characters of corpus lines, credentials and benign interleaved, as one long pasted note."""
    lines = [case.text for pair in zip(load("benign"), load("credentials"), strict=False) for case in pair]
    text = ""
    while len(text) < MAX_TEXT:
        text += "\n".join(lines) + "\n"
    return text[:MAX_TEXT]


def adversarial_times(rounds: int = ROUNDS) -> dict[str, float]:
    """Median milliseconds to scan each adversarial 20,000-character input."""
    return {name: _median_ms(text, rounds) for name, text in adversarial_inputs().items()}


def corpus_figures(rounds: int = ROUNDS) -> dict[str, float | int]:
    result = figures(scan)
    result["realistic_20k_scan_ms"] = _median_ms(realistic_note(), rounds)
    times = adversarial_times(rounds)
    result["adversarial_inputs"] = len(times)
    result["adversarial_20k_median_ms"] = round(statistics.median(times.values()), 2)
    result["adversarial_20k_worst_ms"] = max(times.values())
    return result


def main() -> None:
    result = corpus_figures()
    width = max(map(len, result))
    for name, value in result.items():
        shown = f"{value:.3f}" if isinstance(value, float) and not name.endswith("_ms") else str(value)
        print(f"{name:<{width}}  {shown}")
    print("slowest adversarial inputs (ms):")
    times = adversarial_times()
    for name in sorted(times, key=times.__getitem__, reverse=True)[:5]:
        print(f"  {name:<{width - 2}}  {times[name]}")


if __name__ == "__main__":
    main()

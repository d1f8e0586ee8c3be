"""Run the benchmarks: `python -m bench [--quick] [NAME ...]`.

Prints a table and merges the figures into bench/results.json (one entry per
benchmark, with the time it ran and how fast the machine was then: see
`reference_ms`), so the file always holds the latest run of each benchmark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path

from bench.harness import Figure, reference_ms

RESULTS = Path(__file__).resolve().parent / "results.json"


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )


def print_table(figures: list[Figure]) -> None:
    rows = [("benchmark", "figure", "value", "unit", "goal", "met")]
    for f in figures:
        met = {True: "yes", False: "NO", None: ""}[f.met]
        rows.append((f.benchmark, f.name, f"{f.value:.4g}", f.unit, f.goal or "", met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks (default all: {', '.join(available())})"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    names = args.names or available()
    unknown = set(names) - set(available())
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    all_figures: list[Figure] = []
    speeds: dict[str, float] = {}
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        reference_before = reference_ms()
        started = time.perf_counter()
        figures: list[Figure] = module.run(quick=args.quick)
        seconds = time.perf_counter() - started
        reference = (reference_before + reference_ms()) / 2
        speeds[name] = reference
        all_figures += figures
        results[name] = {
            "ran_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 1),
            "quick": args.quick,
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "reference_ms": round(reference, 2),
            },
            "figures": [f.as_dict() for f in figures],
        }
    print_table(all_figures)
    for name, reference in speeds.items():
        print(f"{name}: reference workload {reference:.1f} ms (lower is a faster machine)")
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten to {RESULTS}", file=sys.stderr)
    return 1 if any(f.met is False for f in all_figures) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark that fits this machine, print a table and write JSON.

    python benchmarks/run.py [--quick] [--output FILE.json] [--only NAME ...]

Each `benchmarks/bench_*.py` module has `run(quick: bool) -> dict | list[dict] | None`; a module
returns None when the machine cannot run it (the CUDA benchmarks on a CPU-only machine), and that is
reported as skipped. Every figure carries its machine; ratios are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `python benchmarks/run.py` from the repo root

from benchmarks.common import machine  # noqa: E402


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def print_table(results: list[dict]) -> None:
    for result in results:
        print(f"\n== {result.get('name', result['module'])}")
        if "skipped" in result:
            print(f"   skipped: {result['skipped']}")
            continue
        for key, value in flatten(result):
            if key.split(".")[0] not in ("name", "module", "machine"):
                print(f"   {key:<60} {format_value(value)}")


def flatten(result: dict, prefix: str = ""):
    """(dotted key, value) for every leaf of nested dicts; lists are left to the JSON."""
    for key, value in result.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        elif not isinstance(value, list):
            yield f"{prefix}{key}", value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke test of every benchmark"
    )
    parser.add_argument("--output", default=None, help="write all results to this JSON file")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help=f"run only these modules (of: {', '.join(discover())})",
    )
    args = parser.parse_args(argv)

    names = args.only or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        parser.error(
            f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(discover())}"
        )
    results, failed = [], False
    for name in names:
        print(f"running {name} ...", flush=True)
        start = time.perf_counter()
        try:
            out = importlib.import_module(f"benchmarks.{name}").run(quick=args.quick)
        except Exception as error:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            out, failed = {"name": name, "error": f"{type(error).__name__}: {error}"}, True
        if out is None:
            out = {"name": name, "skipped": "not supported on this machine"}
        for result in out if isinstance(out, list) else [out]:
            result["module"] = name
            result["seconds"] = round(time.perf_counter() - start, 1)
            results.append(result)
    print_table(results)
    if args.output:
        payload = {"machine": machine(), "quick": args.quick, "results": results}
        Path(args.output).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

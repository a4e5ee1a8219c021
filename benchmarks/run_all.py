"""`make bench`: runs every `bench_*.py` in its own process, then the summary.

    python benchmarks/run_all.py [--quick] [NAME ...]

Each benchmark writes `benchmarks/results/<name>.json`; this script then writes
`benchmarks/results/SUMMARY.md` from all the JSON files present.
"""

import argparse
import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402


def run_one(name, quick):
    # Loops that build many models make TensorFlow warn about retracing on
    # every few calls; the warnings say nothing about the measurements.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    module = importlib.import_module(f"bench_{name}")
    # The 1-minute load average before and after: on a shared machine it says
    # how far to trust a speed ratio.
    before = os.getloadavg()[0]
    result = module.run(quick=quick)
    result["load_before_after"] = [before, os.getloadavg()[0]]
    harness.write_result(name, result)


def write_summary():
    records = [
        json.loads(p.read_text()) for p in sorted(harness.RESULTS.glob("*.json"))
    ]
    lines = [
        "# keras-mtl benchmarks",
        "",
        "Written by `make bench` (`benchmarks/run_all.py`).",
        "",
    ]
    for record in records:
        machine = record["machine"]
        lines += [
            f"## {record['title']}",
            "",
            f"`python benchmarks/run_all.py {record['name']}` on {record['created']}: "
            f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
            f"GPUs: {machine['gpus'] or 'none'}; "
            + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
            + _load_average(record),
            "",
            record["markdown"],
            "",
        ]
    (harness.RESULTS / "SUMMARY.md").write_text("\n".join(lines))


def _load_average(record):
    if "load_before_after" not in record:
        return ""
    before, after = record["load_before_after"]
    return f"; load average {before:.1f} before, {after:.1f} after"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats, for a smoke run"
    )
    parser.add_argument(
        "--one", help=argparse.SUPPRESS
    )  # internal: run in this process
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.quick)
        return 0
    names = args.names or sorted(
        p.stem[len("bench_") :] for p in HERE.glob("bench_*.py")
    )
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        command = [sys.executable, __file__, "--one", name] + (
            ["--quick"] if args.quick else []
        )
        if subprocess.run(command).returncode:
            failed.append(name)
    write_summary()
    print(f"Wrote {harness.RESULTS / 'SUMMARY.md'}")
    if failed:
        print(f"Failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

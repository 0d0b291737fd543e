"""The history's canonical form, side by side: the json module's and orjson's, per row.

    .venv/bin/python bench/canonical.py [--rows 20000] [--repetitions 5]

Hashes the same rows (a stage transition with before/after snapshots, as the log holds them:
snapshots as JSON text, decoded first) both ways, alternating, and prints the medians in µs per
row and their ratio. verify_history tries the orjson path first (registry/history/verify.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def rows(count: int) -> list[list[object]]:
    made = []
    for n in range(count):
        snapshot = {
            "name": f"bench-model-{n % 200:03d}",
            "version": n % 20 + 1,
            "stage": "Staging",
            "source": f"s3://models/bench-model-{n % 200:03d}/{n % 20 + 1}",
            "run_id": f"{n:032x}",
            "run_link": "",
            "description": "A candidate for fraud scoring — retrained nightly",
            "status": "READY",
            "tags": {"validation": "passed", "owner": "risk-team"},
            "aliases": ["staging"],
            "deleted": False,
        }
        after = dict(snapshot, stage="Production", aliases=["production"])
        made.append(
            [n + 1, "model_version.stage_transitioned", "2026-03-03T09:00:00.123456Z", 3,
             "alice", "mg_ab12", "api", "10.0.0.7", f"req-{n}", n % 200 + 1,
             snapshot["name"], snapshot["version"], json.dumps(snapshot), json.dumps(after),
             "approved by bob", "0" * 64]
        )  # fmt: skip
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    import django

    django.setup()
    import orjson

    from registry.events import canonical_row, canonical_row_fast

    data = rows(args.rows)

    def exact(row: list[object]) -> str:
        row = [*row[:12], json.loads(row[12]), json.loads(row[13]), *row[14:]]
        return hashlib.sha256(canonical_row(row)).hexdigest()

    def fast(row: list[object]) -> str:
        row = [*row[:12], orjson.loads(row[12]), orjson.loads(row[13]), *row[14:]]
        return hashlib.sha256(canonical_row_fast(row)).hexdigest()

    assert all(exact(row) == fast(row) for row in data[:1000])
    times: dict[str, list[float]] = {"json module": [], "orjson": []}
    for _ in range(args.repetitions):
        for name, hash_row in (("json module", exact), ("orjson", fast)):
            started = time.perf_counter()
            for row in data:
                hash_row(row)
            times[name].append((time.perf_counter() - started) / len(data) * 1e6)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        runs = " / ".join(f"{value:.1f}" for value in values)
        print(f"{name:12} {medians[name]:6.1f} µs per row (runs: {runs})")
    print(f"ratio json module / orjson: {medians['json module'] / medians['orjson']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Results of bench/mlflow_compare.py: medians per system, ratios, targets and markdown."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median

from report import WrkRun
from stack import Memory

SYSTEMS = ("modelgate", "mlflow")
SYSTEM_NAMES = {"modelgate": "Modelgate", "mlflow": "MLflow"}
# The wrk workloads of bench/mlflow.lua, in the order of the first repetition.
WORKLOADS = ("alias", "latest", "search-models", "search-versions", "create")
LABELS = {
    "alias": "alias `GET`",
    "latest": "`get-latest-versions` (POST)",
    "search-models": "`registered-models/search` `name LIKE`",
    "search-versions": "`model-versions/search` `name=`",
    "create": "`model-versions/create` (POST)",
}
# Connection modes: one connection per request (wrk -H 'Connection: close'), and keep-alive.
MODES = ("close", "keepalive")
MODE_LABELS = {
    "close": "one connection per request (`Connection: close`)",
    "keepalive": "keep-alive",
}
# The targets: Modelgate's req/s over MLflow's, judged at these connection counts with
# one connection per request (MLflow's keep-alive path stalls, flattering keep-alive ratios).
TARGETS = {"alias": 5.0, "latest": 5.0, "search-models": 10.0, "create": 2.0}
TARGET_CONNECTIONS = (8, 32)
TARGET_MODE = "close"
PROBLEM_LINES = 12
DOCS_START = "<!-- bench:mlflow:start -->"
DOCS_END = "<!-- bench:mlflow:end -->"
DOCS_HEADING = "## Modelgate vs MLflow server"


@dataclass(frozen=True)
class Measurement:
    system: str
    mode: str
    run: WrkRun  # run.endpoint is the workload
    settled: float = 0.0  # seconds the system took to go idle after the run
    # CPU of its processes and of its database's backends, during the run and the settling.
    app_cpu_seconds: float = 0.0
    db_cpu_seconds: float = 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * (self.app_cpu_seconds + self.db_cpu_seconds) / max(1, self.run.requests)

    @property
    def db_cpu_ms_per_request(self) -> float:
        return 1000 * self.db_cpu_seconds / max(1, self.run.requests)


@dataclass(frozen=True)
class Point:
    """The repetitions of one workload on one system at one connection count and mode."""

    measurements: list[Measurement]

    @property
    def runs(self) -> list[WrkRun]:
        return [m.run for m in self.measurements]

    @property
    def cpu_ms_per_request(self) -> float:
        return median(m.cpu_ms_per_request for m in self.measurements) if self.runs else 0.0

    @property
    def db_cpu_ms_per_request(self) -> float:
        return median(m.db_cpu_ms_per_request for m in self.measurements) if self.runs else 0.0

    def cpu_text(self) -> str:
        return f"{self.cpu_ms_per_request:.1f} ({self.db_cpu_ms_per_request:.1f})"

    @property
    def requests_per_second(self) -> float:
        return median(run.requests_per_second for run in self.runs) if self.runs else 0.0

    def latency_ms(self, which: str) -> float:
        return median(run.latency_ms(which) for run in self.runs) if self.runs else 0.0

    @property
    def errors(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for run in self.runs:
            for kind, count in run.errors.items():
                total[kind] = total.get(kind, 0) + count
        return total

    @property
    def bytes_per_response(self) -> float:
        return sum(run.bytes for run in self.runs) / max(1, sum(run.requests for run in self.runs))


@dataclass(frozen=True)
class Deployment:
    """How one system was run, and its idle memory by process group."""

    description: str
    memory_after_seed: dict[str, Memory]
    memory_after_load: dict[str, Memory]
    problems: list[str] = field(default_factory=list)


@dataclass
class Report:
    date: datetime
    command: str
    machine: str
    code: str
    load_before: float
    foreign_cpu: float
    database: str
    data: str
    duration: int
    repetitions: int
    connections: list[int]
    measurements: list[Measurement]
    deployments: dict[str, Deployment]

    def point(self, system: str, workload: str, connections: int, mode: str) -> Point:
        return Point(
            [
                m
                for m in self.measurements
                if (m.system, m.mode, m.run.endpoint, m.run.connections)
                == (system, mode, workload, connections)
            ]
        )

    def ratio(self, workload: str, connections: int, mode: str) -> float:
        mlflow = self.point("mlflow", workload, connections, mode).requests_per_second
        ours = self.point("modelgate", workload, connections, mode).requests_per_second
        return ours / mlflow if mlflow else float("inf")

    def error_runs(self, system: str) -> list[Measurement]:
        return [m for m in self.measurements if m.system == system and m.run.error_count]

    @property
    def ok(self) -> bool:
        """Modelgate answered every request 2xx and logged no error (MLflow's are reported)."""
        return not self.error_runs("modelgate") and not self.deployments["modelgate"].problems

    def markdown(self, heading: str = "###") -> str:
        sections = [
            self._setup(),
            *(self._throughput(mode, heading) for mode in MODES),
            self._sizes(heading),
            self._memory(heading),
            self._targets(heading),
            self._errors(heading),
        ]
        return "\n\n".join(sections) + "\n"

    def _setup(self) -> str:
        return "\n".join(
            [
                f"Run on {self.date:%Y-%m-%d %H:%M} UTC with:",
                "",
                "```",
                self.command,
                "```",
                "",
                f"- Machine: {self.machine}",
                f"- Quiet? load average {self.load_before:.2f} at the start; other processes "
                f"used {self.foreign_cpu:.0%} of the CPU time while wrk ran"
                + (" (**busy machine: noisy figures**)" if self.foreign_cpu > 0.05 else ""),
                f"- Code: {self.code}",
                f"- Database: {self.database}",
                *(
                    f"- {SYSTEM_NAMES[name]}: {deployment.description}"
                    for name, deployment in self.deployments.items()
                ),
                f"- Data: {self.data}",
                f"- Load: wrk, {self.duration} s per run, {self.repetitions} repetitions; each "
                "measurement runs on both systems back to back, the one going first alternating; "
                "medians shown, ratio = Modelgate req/s ÷ MLflow req/s",
                f"- Between runs: both databases vacuumed and ANALYZEd after seeding and before "
                f"each repetition; after each run, a wait until that system was idle again "
                f"({self._settling()})",
            ]
        )

    def _settling(self) -> str:
        parts = []
        for system in SYSTEMS:
            waits = [m for m in self.measurements if m.system == system]
            if not waits:
                continue
            longest = max(waits, key=lambda m: m.settled)
            parts.append(
                f"{SYSTEM_NAMES[system]}: median {median(m.settled for m in waits):.1f} s, "
                f"longest {longest.settled:.1f} s after {longest.run.endpoint} at "
                f"{longest.run.connections} conns ({longest.mode})"
            )
        return "; ".join(parts)

    def _throughput(self, mode: str, heading: str) -> str:
        lines = [
            f"{heading} Throughput, {MODE_LABELS[mode]}",
            "",
            "CPU ms/req: CPU time of the system's processes and of its database's PostgreSQL "
            "backends (in brackets: the backends' part) during the run and until the system was "
            "idle again, per request answered; less sensitive than req/s to what else the "
            "machine was doing.",
            "",
            "| workload | conns | Modelgate req/s | MLflow req/s | ratio "
            "| Modelgate p50 / p99 ms | MLflow p50 / p99 ms | CPU ms/req Modelgate / MLflow "
            "| errors Modelgate / MLflow |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for workload in WORKLOADS:
            for connections in self.connections:
                ours = self.point("modelgate", workload, connections, mode)
                theirs = self.point("mlflow", workload, connections, mode)
                lines.append(
                    f"| {LABELS[workload]} | {connections} "
                    f"| {_rate(ours.requests_per_second)} | {_rate(theirs.requests_per_second)} "
                    f"| **{self.ratio(workload, connections, mode):.1f}x** "
                    f"| {ours.latency_ms('p50'):.1f} / {ours.latency_ms('p99'):.1f} "
                    f"| {theirs.latency_ms('p50'):.1f} / {theirs.latency_ms('p99'):.1f} "
                    f"| {ours.cpu_text()} / {theirs.cpu_text()} "
                    f"| {_errors(ours.errors)} / {_errors(theirs.errors)} |"
                )
        return "\n".join(lines)

    def _sizes(self, heading: str) -> str:
        lines = [
            f"{heading} Response sizes",
            "",
            "Bytes per response as wrk read them (status line, headers and body), keep-alive "
            "runs; MLflow indents its JSON.",
            "",
            "| workload | Modelgate | MLflow |",
            "|---|---:|---:|",
        ]
        for workload in WORKLOADS:
            sizes = [
                Point(
                    [
                        m
                        for m in self.measurements
                        if (m.system, m.mode, m.run.endpoint) == (system, "keepalive", workload)
                    ]
                ).bytes_per_response
                for system in SYSTEMS
            ]
            lines.append(f"| {LABELS[workload]} | {sizes[0]:,.0f} | {sizes[1]:,.0f} |")
        return "\n".join(lines)

    def _memory(self, heading: str) -> str:
        lines = [
            f"{heading} Idle memory",
            "",
            "Read after seeding (before any load) and again after the load, each time after the "
            "idle wait; RSS counts pages shared between a master and its forked workers once per "
            "process, PSS splits them, so the PSS total is what a deployment really occupies.",
            "",
            "| system | processes | count | RSS MB after seed | PSS MB after seed "
            "| RSS MB after load | PSS MB after load |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for system, deployment in self.deployments.items():
            seeded, loaded = deployment.memory_after_seed, deployment.memory_after_load
            rows = [(name, seeded.get(name), loaded.get(name)) for name in loaded]
            rows.append(
                (
                    "**total**",
                    Memory.total(list(seeded.values())),
                    Memory.total(list(loaded.values())),
                )
            )
            for name, before, after in rows:
                lines.append(
                    f"| {SYSTEM_NAMES[system]} | {name} | {after.pids if after else 0} "
                    f"| {_mb(before and before.rss_kb)} | {_mb(before and before.pss_kb)} "
                    f"| {_mb(after and after.rss_kb)} | {_mb(after and after.pss_kb)} |"
                )
        return "\n".join(lines)

    def _targets(self, heading: str) -> str:
        conns = [c for c in TARGET_CONNECTIONS if c in self.connections]
        lines = [
            f"{heading} Targets",
            "",
            f"Modelgate's req/s over MLflow's at {' and '.join(map(str, conns))} connections, "
            f"{MODE_LABELS[TARGET_MODE]}; keep-alive ratios for comparison.",
            "",
        ]
        for workload, target in TARGETS.items():
            ratios = [self.ratio(workload, c, TARGET_MODE) for c in conns]
            met = bool(ratios) and all(ratio >= target for ratio in ratios)
            detail = ", ".join(f"{r:.1f}x at {c}" for r, c in zip(ratios, conns, strict=True))
            keepalive = ", ".join(f"{self.ratio(workload, c, 'keepalive'):.1f}x" for c in conns)
            line = (
                f"- {LABELS[workload]} ≥ {target:g}x: {'met' if met else '**not met**'} "
                f"({detail}; keep-alive {keepalive})"
            )
            if workload == "create":
                errors = sum(m.run.error_count for m in self.measurements if _is(m, "create"))
                line += f"; Modelgate errors in every create run: {errors}" + (
                    "" if errors == 0 else " (**target not met**)"
                )
            lines.append(line)
        return "\n".join(lines)

    def _errors(self, heading: str) -> str:
        lines = [f"{heading} Errors", ""]
        for system in SYSTEMS:
            runs = self.error_runs(system)
            problems = self.deployments[system].problems
            name = SYSTEM_NAMES[system]
            if not runs and not problems:
                lines.append(f"- {name}: none (no socket errors, all answers 2xx, no logged error)")
                continue
            for m in runs:
                lines.append(
                    f"- {name}: {m.run.endpoint} at {m.run.connections} conns ({m.mode}): "
                    f"{m.run.error_text()} of {m.run.requests} requests"
                )
            if problems:
                shown = [f"  {line[:300]}" for line in problems[:PROBLEM_LINES]]
                more = len(problems) - len(shown)
                lines += [
                    f"- {name} log lines (errors, tracebacks, 5xx; the first {len(shown)}"
                    + (f", {more}+ more" if more > 0 else "")
                    + "):",
                    "",
                    "  ```",
                    *shown,
                    "  ```",
                ]
        return "\n".join(lines)


def _is(measurement: Measurement, workload: str) -> bool:
    return measurement.system == "modelgate" and measurement.run.endpoint == workload


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _errors(errors: dict[str, int]) -> str:
    shown = [f"{count} {kind}" for kind, count in errors.items() if count]
    return ", ".join(shown) if shown else "0"


def _mb(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:,.0f}"


def update_docs(path: Path, section: str) -> None:
    """Replace the section between the markers in the docs page, or append it with them.

    The markers enclose the whole `## Modelgate vs MLflow server` section, heading included,
    so the rest of the page (the native alias benchmark) is never touched.
    """
    block = f"{DOCS_START}\n{section.rstrip()}\n{DOCS_END}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(DOCS_START) + ".*?" + re.escape(DOCS_END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = f"{text.rstrip()}\n\n{block}\n"
    path.write_text(text)

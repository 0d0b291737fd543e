"""Benchmark results: wrk runs in, medians, ratios, targets and markdown out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

from stack import Memory

# The wrk modes of bench/alias.lua, in the order they are run in the first repetition.
ENDPOINTS = ("floor", "200", "304")
LABELS = {
    "floor": "floor `GET /healthz`",
    "200": "alias `GET` → 200",
    "304": "alias `GET` → 304",
}
# The targets of the issue that asked for this benchmark.
ALIAS_OVER_FLOOR = 0.6
NOT_MODIFIED_OVER_OK = 1.5
MEMORY_LIMIT_MB = 400
DOCS_START = "<!-- bench:results:start -->"
DOCS_END = "<!-- bench:results:end -->"


@dataclass(frozen=True)
class WrkRun:
    """One wrk run, from the JSON line bench/alias.lua prints in done()."""

    endpoint: str
    connections: int
    requests: int
    duration_us: int
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]
    # CPU time the web processes spent during the run (None: not measured).
    web_cpu_seconds: float | None = None

    @classmethod
    def from_wrk(
        cls,
        endpoint: str,
        connections: int,
        data: dict[str, Any],
        web_cpu_seconds: float | None = None,
    ) -> WrkRun:
        return cls(
            endpoint=endpoint,
            connections=connections,
            requests=data["requests"],
            duration_us=data["duration_us"],
            bytes=data["bytes"],
            errors=data["errors"],
            latency_us=data["latency_us"],
            web_cpu_seconds=web_cpu_seconds,
        )

    @property
    def cpu_us_per_request(self) -> float | None:
        """Web CPU per answered request: less sensitive than req/s to a busy machine."""
        if self.web_cpu_seconds is None or not self.requests:
            return None
        return self.web_cpu_seconds / self.requests * 1e6

    @property
    def requests_per_second(self) -> float:
        return self.requests / (self.duration_us / 1e6)

    def latency_ms(self, which: str) -> float:
        return self.latency_us[which] / 1000

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def error_text(self) -> str:
        """As wrk words it: status is its 'Non-2xx or 3xx responses' count."""
        return ", ".join(f"{kind} {count}" for kind, count in self.errors.items() if count)


@dataclass(frozen=True)
class Point:
    """The repetitions of one endpoint at one connection count."""

    endpoint: str
    connections: int
    runs: list[WrkRun]

    @property
    def requests_per_second(self) -> float:
        return median(run.requests_per_second for run in self.runs)

    def latency_ms(self, which: str) -> float:
        return median(run.latency_ms(which) for run in self.runs)

    @property
    def bytes_per_response(self) -> float:
        return sum(run.bytes for run in self.runs) / max(1, sum(run.requests for run in self.runs))

    @property
    def cpu_us_per_request(self) -> float | None:
        values = [run.cpu_us_per_request for run in self.runs]
        return median(v for v in values if v is not None) if None not in values else None


@dataclass
class Report:
    date: datetime
    command: str
    machine: str
    code: str
    load_before: float  # 1-minute load average when the run started
    foreign_cpu: float  # share of the CPU time other processes used while wrk ran
    database: str
    broker: str
    models: int
    versions: int
    alias_urls: int
    seed_seconds: float
    duration: int
    repetitions: int
    connections: list[int]
    runs: list[WrkRun]
    memory: dict[str, Memory]
    server_problems: list[str] = field(default_factory=list)
    # bench/run.py --before: the same endpoints on a server serving the alias route as before.
    before_runs: list[WrkRun] = field(default_factory=list)

    @property
    def failed_runs(self) -> list[WrkRun]:
        return [run for run in self.runs if run.error_count]

    @property
    def ok(self) -> bool:
        return not self.failed_runs and not self.server_problems

    def point(self, endpoint: str, connections: int, before: bool = False) -> Point:
        runs = [
            r
            for r in (self.before_runs if before else self.runs)
            if (r.endpoint, r.connections) == (endpoint, connections)
        ]
        return Point(endpoint, connections, runs)

    def ratio(self, endpoint: str, over: str, connections: int, before: bool = False) -> float:
        return (
            self.point(endpoint, connections, before).requests_per_second
            / self.point(over, connections, before).requests_per_second
        )

    @property
    def memory_total(self) -> Memory:
        return Memory.total(list(self.memory.values()))

    def markdown(self) -> str:
        sections = [
            self._setup(),
            self._throughput(),
            self._ratios(),
            *([self._before()] if self.before_runs else []),
            self._memory(),
            self._verdict(),
            self._errors(),
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
                f"- Database: {self.database}; broker: {self.broker}",
                f"- Data: {self.models} models of {self.versions} versions, aliases `production` "
                f"and `staging` on each ({self.alias_urls} alias URLs, requested round-robin); "
                f"seeded in {self.seed_seconds} s",
                f"- Load: wrk, {self.duration} s per run, {self.repetitions} repetitions, "
                "endpoints interleaved within each repetition; medians shown",
            ]
        )

    def _throughput(self) -> str:
        lines = [
            "| endpoint | conns | req/s (median) | req/s (runs) | p50 ms | p99 ms | bytes/resp "
            "| web CPU µs/req |",
            "|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for connections in self.connections:
            for endpoint in ENDPOINTS:
                point = self.point(endpoint, connections)
                runs = " / ".join(f"{run.requests_per_second:.0f}" for run in point.runs)
                lines.append(
                    f"| {LABELS[endpoint]} | {connections} | {point.requests_per_second:,.0f} | "
                    f"{runs} | {point.latency_ms('p50'):.2f} | {point.latency_ms('p99'):.2f} | "
                    f"{point.bytes_per_response:.0f} | {_us(point.cpu_us_per_request)} |"
                )
        return "\n".join(lines)

    def _before(self) -> str:
        lines = [
            "Before and after, in the same run: a second web server on the same data served the "
            "alias route as before the lean lane (Django's ASGI handler for every request, no "
            "304s from memory; on SQLite a database connection per request), measured "
            "interleaved with the one above.",
            "",
            "| conns | endpoint | before req/s | after req/s | before web CPU µs/req "
            "| after web CPU µs/req |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for connections in self.connections:
            for endpoint in ENDPOINTS:
                old = self.point(endpoint, connections, before=True)
                new = self.point(endpoint, connections)
                lines.append(
                    f"| {connections} | {LABELS[endpoint]} | {old.requests_per_second:,.0f} "
                    f"| {new.requests_per_second:,.0f} | {_us(old.cpu_us_per_request)} "
                    f"| {_us(new.cpu_us_per_request)} |"
                )
        lines += [
            "",
            "| conns | 200 / floor before | 200 / floor after "
            "| 304 / 200 before | 304 / 200 after |",
            "|---:|---:|---:|---:|---:|",
        ]
        for c in self.connections:
            lines.append(
                f"| {c} | {self.ratio('200', 'floor', c, before=True):.2f} "
                f"| {self.ratio('200', 'floor', c):.2f} "
                f"| {self.ratio('304', '200', c, before=True):.2f} "
                f"| {self.ratio('304', '200', c):.2f} |"
            )
        return "\n".join(lines)

    def cpu_ratio(self, endpoint: str, over: str, connections: int) -> float | None:
        """How many requests of `endpoint` the web CPU of one of `over` pays for."""
        mine = self.point(endpoint, connections).cpu_us_per_request
        theirs = self.point(over, connections).cpu_us_per_request
        return theirs / mine if mine and theirs else None

    def _ratios(self) -> str:
        lines = [
            f"| conns | alias 200 / floor (target ≥ {ALIAS_OVER_FLOOR}) "
            f"| alias 304 / alias 200 (target ≥ {NOT_MODIFIED_OVER_OK}) "
            "| by web CPU per request: 200 / floor | 304 / 200 |",
            "|---:|---:|---:|---:|---:|",
        ]
        for connections in self.connections:
            alias = self.ratio("200", "floor", connections)
            not_modified = self.ratio("304", "200", connections)
            lines.append(
                f"| {connections} | {alias:.2f} {_mark(alias >= ALIAS_OVER_FLOOR)} "
                f"| {not_modified:.2f} {_mark(not_modified >= NOT_MODIFIED_OVER_OK)} "
                f"| {_ratio(self.cpu_ratio('200', 'floor', connections))} "
                f"| {_ratio(self.cpu_ratio('304', '200', connections))} |"
            )
        return "\n".join(lines)

    def _memory(self) -> str:
        lines = [
            "Idle memory after the load:",
            "",
            "| process | processes | RSS MB | PSS MB |",
            "|---|---:|---:|---:|",
        ]
        rows = [*self.memory.items(), ("total", self.memory_total)]
        for name, memory in rows:
            lines.append(
                f"| {name} | {memory.pids} | {_mb(memory.rss_kb)} | {_mb(memory.pss_kb)} |"
            )
        lines += [
            "",
            "RSS counts pages shared between gunicorn's master and its forked workers once per "
            "process; PSS splits them, so its total is what the three really occupy.",
        ]
        return "\n".join(lines)

    def _verdict(self) -> str:
        def at_each(endpoint: str, over: str, target: float) -> str:
            ratios = [self.ratio(endpoint, over, c) for c in self.connections]
            met = all(ratio >= target for ratio in ratios)
            shown = ", ".join(
                f"{ratio:.2f} at {c}" for ratio, c in zip(ratios, self.connections, strict=True)
            )
            by_cpu = ", ".join(_ratio(self.cpu_ratio(endpoint, over, c)) for c in self.connections)
            return (
                f"{'met' if met else '**not met**'} ({shown} connections; "
                f"by web CPU per request {by_cpu})"
            )

        total = self.memory_total
        rss_mb = total.rss_kb / 1024
        pss_mb = total.pss_kb / 1024 if total.pss_kb is not None else None
        if rss_mb < MEMORY_LIMIT_MB:
            memory = f"met ({rss_mb:.0f} MB RSS sum"
        elif pss_mb is not None and pss_mb < MEMORY_LIMIT_MB:
            memory = f"met by PSS, not by the RSS sum ({rss_mb:.0f} MB RSS"
        else:
            memory = f"**not met** ({rss_mb:.0f} MB RSS"
        memory += f", {pss_mb:.0f} MB PSS)" if pss_mb is not None else ")"
        return "\n".join(
            [
                "Targets:",
                "",
                f"- alias GET ≥ {ALIAS_OVER_FLOOR} times the floor's throughput: "
                + at_each("200", "floor", ALIAS_OVER_FLOOR),
                f"- 304 path ≥ {NOT_MODIFIED_OVER_OK} times the 200 path's throughput: "
                + at_each("304", "200", NOT_MODIFIED_OVER_OK),
                f"- idle memory of web + worker + beat < {MEMORY_LIMIT_MB} MB: {memory}",
            ]
        )

    def _errors(self) -> str:
        lines = []
        for run in self.failed_runs:
            lines.append(f"- wrk {run.endpoint} at {run.connections} conns: {run.error_text()}")
        if self.server_problems:
            lines += ["- server log lines:", "", "  ```", *self.server_problems, "  ```"]
        if not lines:
            return "Errors: none (no socket errors, no non-2xx/3xx answers, no server errors)."
        return "\n".join(["Errors:", "", *lines])


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _mb(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.0f}"


def update_docs(path: Path, markdown: str) -> None:
    """Put the results between the markers in the docs page, or append them with the markers."""
    block = f"{DOCS_START}\n{markdown}{DOCS_END}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(DOCS_START) + ".*?" + re.escape(DOCS_END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = f"{text.rstrip()}\n\n## Latest results\n\n{block}\n"
    path.write_text(text)

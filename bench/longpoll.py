"""Long-polling under load: do hundreds of waiting bots slow the other requests, and how fast
does a move reach them?

One run (`make bench-longpoll`): seed, start web + worker + beat as `make run` does, then, in
each of 3 repetitions, measure the alias read (304 path, wrk, 8 connections) with and without
N bots waiting (`?wait=60` with a matching If-None-Match, on one alias of another model), move
that alias, and time until every waiting bot has its 200, from sending the move (and from the
move's own answer, which the server sends while it answers the bots too). Prints medians and
the ratio of the throughput with waiters to without. Targets (issue 3): within 20 % with 500
waiting; the move reaches every bot within 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from run import USERNAME, seed, warm_credentials, write_targets, wrk
from stack import Stack, free_port


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, default=500)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--repetitions", type=int, default=3)
    return parser.parse_args(argv)


class Waiters:
    """N long-polls on one alias from a thread of their own; records when each answer began.

    Each bot is a bare HTTP/1.1 request on a connection of its own, read up to its status
    line: like wrk for the throughput, the client does as little as it can, so the time
    measured is the server's, not the parsing of 500 responses by a client on the same CPUs.
    """

    def __init__(self, url: str, authorization: str, etag: str, count: int) -> None:
        self.url, self.authorization, self.etag, self.count = url, authorization, etag, count
        self.results: list[tuple[int, float]] = []
        self.connected = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _one(self, opened: list[int]) -> tuple[int, float]:
        url = urlsplit(self.url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(
            f"GET {url.path}?wait=60 HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: {self.authorization}\r\nIf-None-Match: {self.etag}\r\n\r\n".encode()
        )
        await writer.drain()
        opened.append(1)
        if len(opened) == self.count:
            self.connected.set()
        status_line = await asyncio.wait_for(reader.readline(), 90)
        at = time.monotonic()
        writer.close()
        return int(status_line.split()[1]), at

    async def _run(self) -> None:
        opened: list[int] = []
        self.results = list(await asyncio.gather(*(self._one(opened) for _ in range(self.count))))

    def start(self) -> None:
        self.thread.start()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    var_dir = Path(tempfile.mkdtemp(prefix="modelgate-longpoll-"))
    env = {**os.environ, "MODELGATE_VAR_DIR": str(var_dir)}
    password = "bench-" + os.urandom(8).hex()
    authorization = "Basic " + base64.b64encode(f"{USERNAME}:{password}".encode()).decode()
    seeded = seed(env, var_dir, args, password)
    server = Stack.start(env, var_dir, free_port())
    try:
        server.wait_healthy()
        paths = seeded["paths"]
        polled, others = paths[0], paths[2:]  # bots wait on one alias; wrk reads the others
        targets = var_dir / "targets.tsv"
        write_targets(server.base_url, authorization, others, targets)
        warm_credentials(server.base_url, authorization, others[0])
        wrk(server.base_url, "304", args.connections, 2, targets, authorization)  # warm-up
        with_waiters, without = [], []
        reach: list[float] = []  # from sending the move to the last bot's answer
        after_answer: list[float] = []  # from the move's own answer to the last bot's
        for repetition in range(args.repetitions):
            server.wait_idle()
            without.append(
                wrk(
                    server.base_url,
                    "304",
                    args.connections,
                    args.duration,
                    targets,
                    authorization,
                    server,
                )
            )
            etag = httpx.get(server.base_url + polled, headers={"Authorization": authorization})
            bots = Waiters(
                server.base_url + polled, authorization, etag.headers["ETag"], args.waiters
            )
            bots.start()
            if not bots.connected.wait(30):
                print("the bots could not all connect within 30 s")
                return 1
            time.sleep(2)  # every bot is in and waiting
            with_waiters.append(
                wrk(
                    server.base_url,
                    "304",
                    args.connections,
                    args.duration,
                    targets,
                    authorization,
                    server,
                )
            )
            version = 1 + repetition % args.versions
            moved_at = time.monotonic()
            answer = httpx.put(
                server.base_url + polled,
                json={"version": version if version != 2 else 3},
                headers={"Authorization": authorization},
            )
            answered_at = time.monotonic()
            bots.thread.join(timeout=90)
            statuses = [status for status, _ in bots.results]
            if answer.status_code not in (200, 201) or statuses.count(200) != args.waiters:
                print(f"move answered {answer.status_code}; bots: {sorted(set(statuses))}")
                return 1
            last = max(at for _, at in bots.results)
            reach.append(last - moved_at)
            after_answer.append(last - answered_at)
            print(
                f"  repetition {repetition + 1}: {without[-1].requests_per_second:.0f} req/s "
                f"without, {with_waiters[-1].requests_per_second:.0f} with {args.waiters} "
                f"waiting; the move reached all of them {reach[-1] * 1000:.0f} ms after it was "
                f"sent ({after_answer[-1] * 1000:.0f} ms after it was answered)",
                flush=True,
            )
        problems = server.problem_lines()
    finally:
        server.stop()
    base = statistics.median(run.requests_per_second for run in without)
    loaded = statistics.median(run.requests_per_second for run in with_waiters)
    print(f"\nalias 304 at {args.connections} connections, medians of {args.repetitions} runs:")
    cpu_base = statistics.median(run.cpu_us_per_request or 0 for run in without)
    cpu_loaded = statistics.median(run.cpu_us_per_request or 0 for run in with_waiters)
    print(f"  without waiters: {base:.0f} req/s, web CPU {cpu_base:.0f} µs/req")
    print(
        f"  with {args.waiters} waiting: {loaded:.0f} req/s, web CPU {cpu_loaded:.0f} µs/req "
        f"(throughput ratio {loaded / base:.2f}, target ≥ 0.8; CPU ratio "
        f"{cpu_base / cpu_loaded:.2f})"
    )
    print(
        f"  move to every waiter: median {statistics.median(reach) * 1000:.0f} ms, "
        f"worst {max(reach) * 1000:.0f} ms from sending the move (target < 1000 ms); "
        f"median {statistics.median(after_answer) * 1000:.0f} ms from its answer"
    )
    errors = sum(run.error_count for run in with_waiters + without)
    print(f"  wrk errors: {errors}; server problems: {len(problems)}")
    for line in problems[:10]:
        print("   ", line)
    if errors or problems:
        print(f"Scratch data and logs kept in {var_dir}")
        return 1
    shutil.rmtree(var_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

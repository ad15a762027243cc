"""Load on ``bspm serve``: latency and throughput of a real server on 127.0.0.1, beside ``bspm recommend --users all``.

    python -m benchmarks.serve_load --data ../shared/data/gowalla --preset gowalla-bspm-em [--requests 2000]
        [--mixed 100000] [--work DIR]

Fits and saves the preset (once; kept in ``--work``), times ``bspm recommend --load --users all``
(users per second), starts ``bspm serve`` in its own process, then sends a fixed number of
requests from an asyncio client (a keep-alive connection per request in flight) at concurrency
1, 8 and 32 for each kind: a known user's top 20 (``GET``), a new user's history of 20 items
(``POST``), a batch of 100 known users (``POST``); and a known user scored at request time
(``keep_seen``: what answering known users without the ranking made at load would cost). Then
``--mixed`` requests at concurrency 32 with 10% malformed or invalid ones mixed in (every
answer's status counted; the server's RSS sampled), and a reload under load (two swaps, then a
damaged folder refused, while requests run). Prints tables and writes
``benchmarks/results/serve-<host>-<date>T<HHMM>.json`` with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from . import bspm_process, machine, results_path, save_results

TOKEN = "benchmark-token-0123456789"


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``bspm serve`` in its own process on a free port of 127.0.0.1."""

    def __init__(self, folder: Path, token_file: Path, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "bspm_jax", "serve", "--load", str(folder), "--port",
                                      str(self.port), "--token-file", str(token_file)],
                                     stdout=log.open("w"), stderr=subprocess.STDOUT)
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("bspm serve stopped while starting")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        self.start_s = time.perf_counter() - t0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1, one request at a time.

    As light as a client can be (a request is one write, an answer is read by its Content-Length), so that the
    client, on the same cores as the server, takes as little of them as it can: a general client (httpx) with 32
    connections in one event loop was measured to saturate before the server (LOG, 2026-12-08)."""

    def __init__(self, port: int):
        self.port = port
        self.head = (f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Type: application/json\r\n").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(status, body); ``ConnectionError`` when the connection fails or the answer cannot be read."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            body = body or b""
            self.writer.write(f"{method} {path} HTTP/1.1\r\n".encode() + self.head
                              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status = int((await self.reader.readline()).split()[1])
            length, close = None, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection":
                    close = "close" in value.lower()
            if length is None:
                raise ValueError("an answer without Content-Length")
            data = await self.reader.readexactly(length)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as err:
            self.close()
            raise ConnectionError(f"{type(err).__name__}: {err}") from None
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(port: int, requests: list[tuple[str, str, bytes | None]], concurrency: int,
                during=None) -> dict:
    """Send ``requests`` ((method, path, body)) over ``concurrency`` connections, one request in flight on each;
    latencies and statuses. With ``during`` (a coroutine function given a connection of its own), the requests go
    round until it returns."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    not_json = 0
    done = asyncio.Event()

    def stream():  # once through; with ``during``, round and round until it is over
        while True:
            yield from requests
            if during is None or done.is_set():
                return

    queue = stream()

    async def worker() -> None:
        nonlocal not_json
        connection = Connection(port)
        for method, path, body in queue:
            if during is not None and done.is_set():
                break
            t0 = time.perf_counter()
            try:
                status, data = await connection.request(method, path, body)
            except ConnectionError as err:  # counted, never fatal: the server closed or refused
                errors.append(f"{method} {path} {body[:60] if body else b''!r}: {err}")
                continue
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            try:
                json.loads(data)
            except ValueError:
                not_json += 1
        connection.close()

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    side_result = None
    if during is not None:
        side = Connection(port)
        side_result = await during(side)
        side.close()
        done.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "concurrency": concurrency, "wall_s": wall,
            "throughput_rps": len(latencies) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "not_json": not_json,
            "transport_errors": len(errors), "transport_error_examples": errors[:5],
            **({"during": side_result} if side_result is not None else {})}


def _requests(kind: str, n: int, users: list, items: list, history: list[list], rng: np.random.Generator
              ) -> list[tuple[str, str, bytes | None]]:
    out = []
    for _ in range(n):
        if kind == "known":
            out.append(("GET", f"/v1/users/{users[rng.integers(len(users))]}/recommendations?k=20", None))
        elif kind == "known-scored":  # the same user scored at request time (seen items kept): the online path
            out.append(("GET", f"/v1/users/{users[rng.integers(len(users))]}/recommendations?k=20&keep_seen=true",
                        None))
        elif kind == "history":
            row = history[rng.integers(len(history))]
            picked = [row[i] for i in rng.choice(len(row), min(20, len(row)), replace=False)]
            out.append(("POST", "/v1/recommendations", json.dumps({"histories": {"new": picked}, "k": 20}).encode()))
        else:  # a batch of 100 known users
            picked = [users[i] for i in rng.choice(len(users), 100, replace=False)]
            out.append(("POST", "/v1/recommendations", json.dumps({"users": picked, "k": 20}).encode()))
    return out


BAD_BODIES = [b'{"users": [', b'{"users": ["no-such-user"]}', b'{"histories": {"x": ["no-such-item"]}}',
              b'{"users": [1], "k": 100000}', b"[1, 2, 3]", b'{"users": "abc"}', b"\xff\xfe"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/gowalla")
    parser.add_argument("--preset", default="gowalla-bspm-em")
    parser.add_argument("--requests", type=int, default=2000, help="requests per kind and concurrency")
    parser.add_argument("--mixed", type=int, default=100_000, help="requests of the mixed load (10%% bad)")
    parser.add_argument("--work", default="runs/serve-load", help="folder for the saved model (kept)")
    parser.add_argument("--parts", default="load,mixed,reload", help="which parts to run (default all)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    out = str(results_path("serve", args.out))  # one record, rewritten as each part ends
    from bspm_jax import load_history

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    folder = work / "model"
    result: dict = {"data": args.data, "preset": args.preset, "machine": machine()}
    if not folder.is_dir():
        result["fit_save_s"] = bspm_process("fit", "--data", args.data, "--preset", args.preset, "--save", str(folder))
    history = load_history(folder)
    users = np.asarray(history.user_ids if history.user_ids is not None else np.arange(history.n_users)).tolist()
    items = np.asarray(history.item_ids if history.item_ids is not None else np.arange(history.n_items)).tolist()
    rows = [[items[i] for i in history.train[u].indices] for u in range(history.n_users)]
    rows = [r for r in rows if len(r) >= 5]
    gc.collect()  # the client's histories (a million objects) kept out of its collector: its pauses are not latency
    gc.freeze()
    if "load" in parts:
        export = bspm_process("recommend", "--load", str(folder), "--users", "all", "--k", "20", "--out",
                       str(work / "recs.parquet"))
        result["recommend_all"] = {"seconds": export, "users": len(users), "users_per_s": len(users) / export}
        print(f"bspm recommend --users all: {len(users):,} users in {export:.1f} s, {len(users) / export:,.0f} "
              "users/s")
    (work / "token").write_text(TOKEN)
    live = work / "live"
    shutil.rmtree(live, ignore_errors=True)
    shutil.copytree(folder, live)
    server = Server(live, work / "token", work / "server.log")
    result["server_start_s"] = server.start_s
    rng = np.random.default_rng(0)
    try:
        print(f"server ready in {server.start_s:.1f} s (load, rank every known user, compile)")
        print("| kind | concurrency | requests | p50 ms | p99 ms | throughput /s | users /s | statuses |")
        print("|---|---|---|---|---|---|---|---|")
        result["load"] = []
        for kind in ("known", "known-scored", "history", "batch100") if "load" in parts else ():
            for concurrency in (1, 8, 32):
                asyncio.run(_load(server.port, _requests(kind, 50, users, items, rows, rng), concurrency))  # warm
                r = asyncio.run(_load(server.port, _requests(kind, args.requests, users, items, rows, rng), concurrency))
                r["kind"] = kind
                r["users_per_s"] = r["throughput_rps"] * (100 if kind == "batch100" else 1)
                result["load"].append(r)
                print(f"| {kind} | {concurrency} | {r['requests']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                      f"{r['throughput_rps']:,.0f} | {r['users_per_s']:,.0f} | {r['statuses']} |", flush=True)
        save_results("serve", out, result)

        if "mixed" in parts:
            _mixed(server, args, users, items, rows, rng, result)
            save_results("serve", out, result)
        if "reload" in parts:
            _reload_under_load(server, live, args, users, items, rows, rng, result)
        path = save_results("serve", out, result)
        print(f"wrote {path}", file=sys.stderr)
    finally:
        server.stop()
    return 0


def _mixed(server: Server, args: argparse.Namespace, users: list, items: list, rows: list,
           rng: np.random.Generator, result: dict) -> None:
    """--mixed requests at concurrency 32, one in ten bad; every status counted, the server's RSS sampled."""
    good = _requests("known", args.mixed, users, items, rows, rng)
    mixed, bad = [], 0
    for i, request in enumerate(good):
        if rng.random() < 0.1:
            mixed.append(("POST", "/v1/recommendations", BAD_BODIES[bad % len(BAD_BODIES)]))
            bad += 1
        else:
            mixed.append(request if i % 2 else _requests("history", 1, users, items, rows, rng)[0])
    rss = [_rss_mib(server.proc.pid)]
    chunks = []
    step = max(1, len(mixed) // 10)
    for start in range(0, len(mixed), step):
        chunks.append(asyncio.run(_load(server.port, mixed[start:start + step], 32)))
        rss.append(_rss_mib(server.proc.pid))
    statuses: dict[str, int] = {}
    for c in chunks:
        for k, v in c["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    result["mixed"] = {"requests": len(mixed), "bad": bad, "statuses": statuses,
                       "transport_errors": sum(c["transport_errors"] for c in chunks),
                       "transport_error_examples": [e for c in chunks for e in c["transport_error_examples"]][:10],
                       "not_json": sum(c["not_json"] for c in chunks), "rss_mib": rss,
                       "p99_ms": max(c["p99_ms"] for c in chunks)}
    print(f"mixed: {len(mixed):,} requests, {bad:,} bad; statuses {statuses}; answers not JSON: "
          f"{result['mixed']['not_json']}; connection errors {result['mixed']['transport_errors']} "
          f"{result['mixed']['transport_error_examples'][:3]}; RSS MiB {[round(x) for x in rss]}")


def _reload_under_load(server: Server, live: Path, args: argparse.Namespace, users: list, items: list, rows: list,
                       rng: np.random.Generator, result: dict) -> None:
    """Requests at concurrency 8 all through two reloads and a refused one (a damaged folder)."""
    async def reloads(client) -> list:
        out = []
        for damaged in (False, False, True):
            await asyncio.sleep(2.0)
            if damaged:
                arrays = next(p for p in live.iterdir() if p.suffix == ".npz")
                arrays.write_bytes(arrays.read_bytes()[: 1000])
            t0 = time.perf_counter()
            status, _ = await client.request("POST", "/v1/reload")
            out.append({"damaged": damaged, "status": status, "seconds": time.perf_counter() - t0})
        return out

    during = _requests("known", 1000, users, items, rows, rng) + _requests("history", 200, users, items, rows, rng)
    rng.shuffle(during)
    r = asyncio.run(_load(server.port, during, 8, during=reloads))
    result["reload"] = r
    print(f"reload under load: {r['requests']:,} requests, statuses {r['statuses']}, connection errors "
          f"{r['transport_errors']}; reloads {r['during']}")


if __name__ == "__main__":
    sys.exit(main())

"""``bspm serve`` through a real server process on 127.0.0.1 (started and stopped here), and its app in process:
answers equal ``bspm recommend --load``; every bad request is a 4xx with a JSON body; reloads swap or refuse."""

from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from bspm_jax.cli import main  # noqa: E402

TOKEN = "s3cret-token-of-some-length"
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A BSPM model saved with its ids, fitted on 300 users with string ids."""
    folder = tmp_path_factory.mktemp("serve")
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}") for u in range(300) for i in rng.choice(200, rng.integers(8, 31), replace=False)]
    (folder / "plays.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    assert main(["fit", "--data", str(folder / "plays.csv"), "--split", "none", "--set", "rank=64",
                 "--save", str(folder / "model"), "--quiet"]) == 0
    (folder / "token").write_text(TOKEN + "\n")
    return folder


@contextlib.contextmanager
def server(folder: Path, *extra: str):
    """``bspm serve`` in its own process on a free port of 127.0.0.1; stopped (and waited for) on exit."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bspm_jax", "serve", "--load", str(folder / "model"), "--port",
                             str(port), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode is not None  # never left behind


def _recommend_cli(folder: Path, users: list[str], histories: list[list[str]], k: int, keep_seen: bool = False,
                   ) -> dict[str, list[tuple[str, float]]]:
    """``bspm recommend --load`` for the same users and histories (to Parquet: scores as computed), as
    {user: [(item, score), ...]}."""
    import pyarrow.parquet as pq

    out = folder / f"recs-{len(users)}-{len(histories)}-{keep_seen}.parquet"
    args = ["recommend", "--load", str(folder / "model"), "--users", ",".join(users), "--k", str(k), "--quiet",
            "--out", str(out)]
    args += [a for h in histories for a in ("--history", ",".join(h))] + (["--keep-seen"] if keep_seen else [])
    assert main(args) == 0
    lists: dict[str, list[tuple[str, float]]] = {}
    for row in pq.read_table(out).to_pylist():
        lists.setdefault(row["user"], []).append((row["item"], row["score"]))
    return lists


def _same(answer: dict, expected: list[tuple[str, float]]) -> None:
    """The same items in the same order, and the same scores to float32 rounding (the server scores histories in
    padded batches of other sizes than ``bspm recommend``; only the native kernel promises the same bits for every
    batch size, and a CPU without it falls back to XLA)."""
    assert [i["item"] for i in answer["items"]] == [i for i, _ in expected]
    np.testing.assert_allclose([i["score"] for i in answer["items"]], [s for _, s in expected], rtol=1e-5)


def test_every_endpoint_answers_what_bspm_recommend_does(saved: Path) -> None:
    users = [f"u{u}" for u in (0, 7, 42, 299)]
    histories = [["i1", "i5", "i9"], ["i100", "i3"]]
    expected = _recommend_cli(saved, users, histories, 10)
    kept = _recommend_cli(saved, users[:2], [], 10, keep_seen=True)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with server(saved, "--token-file", str(saved / "token")) as (url, _):
        for user in users:
            answer = httpx.get(f"{url}/v1/users/{user}/recommendations", params={"k": 10}, headers=auth).json()
            assert answer["user"] == user
            _same(answer, expected[user])
        for user in users[:2]:
            answer = httpx.get(f"{url}/v1/users/{user}/recommendations", params={"k": 10, "keep_seen": "true"},
                               headers=auth).json()
            _same(answer, kept[user])
        body = {"users": users, "histories": {"new1": histories[0], "new2": histories[1]}, "k": 10}
        answer = httpx.post(f"{url}/v1/recommendations", json=body, headers=auth).json()["recommendations"]
        assert [a["user"] for a in answer] == users + ["new1", "new2"]
        for a in answer:
            _same(a, expected[a["user"]])
        batched = _concurrent_histories(url, auth, [histories[i % 2] for i in range(24)])  # scored together
        for answer in batched:
            _same(answer, expected[f"new{histories.index([i for i in answer['asked']]) + 1}"])
        sizes = httpx.get(f"{url}/metrics", headers=auth).text
        calls = float(next(line.split()[-1] for line in sizes.splitlines() if line.startswith("bspm_batch_rows_count")))
        rows = float(next(line.split()[-1] for line in sizes.splitlines() if line.startswith("bspm_batch_rows_sum")))
        # scored at request time: 2 users keeping their seen items, 2 histories in one batch, then the 24 at once,
        # which took fewer calls than requests
        assert rows == 2 + 2 + 24 and calls < 2 + 1 + 24
        info = httpx.get(f"{url}/v1/model", headers=auth).json()
        header = json.loads((saved / "model" / "model.json").read_text())
        assert (info["model"], info["users"], info["items"]) == ("bspm", 300, 200)
        assert info["train_digest"] == header["train"]["digest"]
        assert httpx.get(f"{url}/v1/model").status_code == 401
        assert httpx.get(f"{url}/v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{url}/v1/health").json() == {"status": "ok"}  # health needs no token
        schema = httpx.get(f"{url}/openapi.json", headers=auth).json()
        assert {"/v1/health", "/v1/model", "/v1/users/{user_id}/recommendations", "/v1/recommendations",
                "/v1/reload", "/metrics"} <= set(schema["paths"])
        metrics = httpx.get(f"{url}/metrics", headers=auth).text
        assert 'bspm_requests_total{endpoint="/v1/recommendations",method="POST",status="200"} 25.0' in metrics
        assert 'bspm_request_errors_total{endpoint="/v1/model",status="401"} 2.0' in metrics


def _concurrent_histories(url: str, auth: dict, histories: list[list[str]]) -> list[dict]:
    """One request per history, all in flight at once; each answer with the history it asked for."""
    import asyncio

    async def ask(client, history):
        answer = await client.post(f"{url}/v1/recommendations", json={"histories": {"h": history}, "k": 10},
                                   headers=auth)
        return {**answer.json()["recommendations"][0], "asked": history}

    async def run():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(ask(client, h) for h in histories))

    return asyncio.run(run())


BAD = [  # (method, path, body or None, headers, status, words in the error)
    ("POST", "/v1/recommendations", b'{"users": [', {}, 400, "malformed JSON"),
    ("POST", "/v1/recommendations", b"\xff\xfe\x00", {}, 400, "malformed JSON"),
    ("POST", "/v1/recommendations", b"[1, 2]", {}, 422, "valid dictionary"),
    ("POST", "/v1/recommendations", b'{"users": ["nobody"]}', {}, 404, "unknown user id 'nobody'"),
    ("POST", "/v1/recommendations", b'{"histories": {"a": ["zz"]}}', {}, 422, "unknown item id 'zz'"),
    ("POST", "/v1/recommendations", b'{"users": ["u1"], "k": 0}', {}, 422, "k"),
    ("POST", "/v1/recommendations", b'{"users": ["u1"], "k": 101}', {}, 422, "k = 101 is above"),
    ("POST", "/v1/recommendations", b'{"users": ["u1"], "k": "ten"}', {}, 422, "k"),
    ("POST", "/v1/recommendations", b'{"users": ["u1"], "extra": 1}', {}, 422, "extra"),
    ("POST", "/v1/recommendations", b'{}', {}, 422, "give users"),
    ("POST", "/v1/recommendations", b'{"users": [[1]]}', {}, 422, "users"),
    ("POST", "/v1/recommendations", b'{"users": ["u1"]}' + b" " * 2_000_000, {}, 413, "over"),
    ("POST", "/v1/recommendations", json.dumps({"users": ["u1"] * 1001}).encode(), {}, 422, "at most 1,000"),
    ("GET", "/v1/users/nobody/recommendations", None, {}, 404, "unknown user"),
    ("GET", "/v1/users/u1/recommendations?k=abc", None, {}, 422, "k"),
    ("GET", "/v1/users/u1/recommendations?k=-3", None, {}, 422, "k"),
    ("GET", "/v1/nothing-here", None, {}, 404, "Not Found"),
    ("DELETE", "/v1/model", None, {}, 405, "Method Not Allowed"),
    ("POST", "/v1/reload", None, {}, 403, "needs a token"),
]


def test_bad_requests_are_4xx_with_a_json_body_in_process(saved: Path) -> None:
    from fastapi.testclient import TestClient

    from bspm_jax.serve import create_app, load_served

    with TestClient(create_app(load_served(saved / "model"))) as client:
        for method, path, body, headers, status, words in BAD:
            answer = client.request(method, path, content=body, headers=headers)
            assert answer.status_code == status, (method, path, body[:40] if body else None, answer.text)
            assert words in answer.json()["error"], (path, answer.json())
        rng = np.random.default_rng(0)  # and random bytes: never a 5xx
        for _ in range(200):
            junk = rng.integers(0, 256, rng.integers(0, 64)).astype(np.uint8).tobytes()
            answer = client.post("/v1/recommendations", content=junk)
            assert 400 <= answer.status_code < 500 and "error" in answer.json()
        assert client.get("/v1/users/u1/recommendations").status_code == 200


def test_a_model_that_cannot_score_histories_says_so(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bspm_jax.serve import create_app, load_served

    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}") for u in range(60) for i in rng.choice(40, rng.integers(5, 12), replace=False)]
    (tmp_path / "p.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    assert main(["fit", "--data", str(tmp_path / "p.csv"), "--model", "mf-bpr", "--set",
                 "train.epochs=2", "--set", "dim=8", "--set", "data.validation=0.2", "--save", str(tmp_path / "m"),
                 "--quiet"]) == 0
    with TestClient(create_app(load_served(tmp_path / "m"))) as client:
        answer = client.post("/v1/recommendations", json={"histories": {"a": ["i1"]}})
        assert answer.status_code == 422 and "cannot score new users' histories" in answer.json()["error"]
        assert client.get("/v1/users/u3/recommendations", params={"keep_seen": True}).status_code == 200


def test_reload_swaps_a_good_folder_and_refuses_a_damaged_one(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "live"
    shutil.copytree(saved / "model", folder / "model")
    (folder / "token").write_text(TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with server(folder, "--token-file", str(folder / "token")) as (url, proc):
        before = httpx.get(f"{url}/v1/model", headers=auth).json()["loaded_at"]
        time.sleep(1.1)
        assert httpx.post(f"{url}/v1/reload").status_code == 401
        import threading

        statuses: list[int] = []
        stop = threading.Event()

        def load() -> None:  # requests all through the swap
            with httpx.Client(headers=auth, timeout=60) as client:
                while not stop.is_set():
                    statuses.append(client.get(f"{url}/v1/users/u{len(statuses) % 300}/recommendations").status_code)
                    statuses.append(client.post(f"{url}/v1/recommendations",
                                                json={"histories": {"h": ["i1", "i2"]}}).status_code)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            swapped = httpx.post(f"{url}/v1/reload", headers=auth, timeout=120)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert swapped.status_code == 200 and swapped.json()["loaded_at"] != before
        assert len(statuses) > 20 and set(statuses) == {200}  # not one request failed across the swap
        arrays = next(p for p in (folder / "model").iterdir() if p.suffix == ".npz")
        arrays.write_bytes(arrays.read_bytes()[:100])  # damaged in place
        refused = httpx.post(f"{url}/v1/reload", headers=auth, timeout=120)
        assert refused.status_code == 422 and "reload refused, the served model is unchanged" in refused.json()["error"]
        answer = httpx.get(f"{url}/v1/users/u1/recommendations", headers=auth)
        assert answer.status_code == 200 and len(answer.json()["items"]) == 10  # the old model still answers
        os.kill(proc.pid, signal.SIGHUP)  # SIGHUP reloads too: refused again, and the server stays up
        deadline = time.monotonic() + 60
        while 'bspm_reloads_total{outcome="refused"} 2.0' not in httpx.get(f"{url}/metrics", headers=auth).text:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert httpx.get(f"{url}/v1/health").status_code == 200


def test_cli_refuses_what_it_cannot_serve(saved: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
    from test_cli import refused

    (tmp_path / "short").write_text("abc")
    for args, words in [(["--load", str(tmp_path / "none")], "none"),
                        (["--load", str(saved / "model"), "--token-file", str(tmp_path / "missing")], "token file"),
                        (["--load", str(saved / "model"), "--token-file", str(tmp_path / "short")], "at least 16")]:
        done = refused("serve", *args)
        assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_api_page_is_self_contained_and_lists_every_endpoint(saved: Path) -> None:
    from fastapi.testclient import TestClient

    from bspm_jax.serve import create_app, load_served

    with TestClient(create_app(load_served(saved / "model"))) as client:
        page = client.get("/docs").text
        schema = client.get("/openapi.json").json()
    assert "http://" not in page and "https://" not in page and "<script" not in page  # nothing fetched when viewed
    for path, methods in schema["paths"].items():
        for method in methods:
            assert f'<span class="m">{method.upper()}</span> <code>{path.replace("{", "{")}</code>' in page
    # shapes in a compact notation, written out here by hand from the declared models
    for shape in ['{"user": string | integer, "items": [{"item": string | integer, "score": number}, ...]}',
                  '{"users"?: [string | integer, ...] | null, "histories"?: {string: [string | integer, ...]} | null, '
                  '"k"?: integer >= 1, default 10, "keep_seen"?: boolean, default false}']:
        assert html.escape(shape) in page
    # the examples shown are ones the API accepts and answers in
    from bspm_jax.serve.app import BatchRequest, BatchResponse, Recommendation

    for model in (BatchRequest, BatchResponse, Recommendation):
        examples = schema["components"]["schemas"][model.__name__]["examples"]
        assert examples and all(model.model_validate(e) for e in examples)
        assert all(html.escape(json.dumps(e)) in page for e in examples)


def test_a_fault_of_the_server_is_a_json_500_and_it_goes_on(saved: Path, caplog) -> None:
    from fastapi.testclient import TestClient

    from bspm_jax.serve import create_app, load_served

    served = load_served(saved / "model")
    app = create_app(served)
    with TestClient(app, raise_server_exceptions=False) as client:
        object.__setattr__(served, "top_items", None)  # a broken model: every known user's answer fails
        answer = client.get("/v1/users/u1/recommendations")
        assert answer.status_code == 500 and answer.json() == {"error": "internal error"}
        assert "GET /v1/users/u1/recommendations failed" in caplog.text  # logged, with its traceback, for the operator
        assert client.get("/v1/health").status_code == 200
        assert 'bspm_request_errors_total{endpoint="/v1/users/{user_id}/recommendations",status="500"} 1.0' in \
            client.get("/metrics").text

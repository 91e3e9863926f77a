"""The REST service end to end: a real uvicorn server on 127.0.0.1 in a child process."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from symbatcher.queue import JobQueue
from symbatcher.testing.server import LocalServer

CHILD = Path(__file__).with_name("server_child.py")
TOKEN = "s3cret"


class Service:
    def __init__(
        self,
        folder: Path,
        data_dir: Path,
        latency: float,
        lease: float,
        token_from_env: bool = False,
        stderr: Path | None = None,
        engine_url: str | None = None,
        options: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.folder, self.data_dir, self.latency, self.lease = folder, data_dir, latency, lease
        self.engine_url = engine_url  # then it is `symbatcher serve --engine-url` (see the child)
        self.options = options  # more of that command's options
        self.env = env or {}  # more of its environment
        self.token_from_env = token_from_env  # SYMBATCHER_API_TOKEN, as `symbatcher serve` reads it
        self.stderr = stderr  # where its stderr goes (default: the test's)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> Service:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        token = "" if self.token_from_env else TOKEN
        args = [str(self.folder), str(port), str(self.latency), str(self.lease), token]
        extra = [self.engine_url, *self.options] if self.engine_url else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **self.env}
        env.pop("SYMBATCHER_API_TOKEN", None)
        if self.token_from_env:
            env["SYMBATCHER_API_TOKEN"] = TOKEN
        with contextlib.ExitStack() as files:
            err = files.enter_context(self.stderr.open("wb")) if self.stderr else None
            self.process = subprocess.Popen(
                [sys.executable, str(CHILD), *args, str(self.data_dir), *extra],
                env=env,
                stderr=err,
            )
        with httpx.Client() as client:  # up when it answers; the process may not be yet
            for _ in range(300):
                try:
                    if client.get(f"{self.url}/healthz", timeout=0.2).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if self.process.poll() is not None:
                    raise RuntimeError("the service exited at start")
                threading_wait(0.05)
        raise RuntimeError("the service did not come up")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )


def threading_wait(seconds: float) -> None:
    import threading

    threading.Event().wait(seconds)  # a pause between looks at a server starting up


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    (tmp_path / "data").mkdir()
    running = Service(tmp_path / "svc", tmp_path / "data", latency=0.01, lease=1.0).start()
    yield running
    running.stop()


def events(client: httpx.Client, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The job's server-sent events, parsed, until the stream ends."""
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                yield kind, json.loads(line[6:])


def results(client: httpx.Client, job_id: str, **params: int) -> list[dict[str, Any]]:
    response = client.get(f"/jobs/{job_id}/results", params=params)
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines()]


def test_submit_watch_and_page_results(service: Service) -> None:
    with service.client() as client:
        created = client.post("/jobs", json={"expression": "echo", "items": list(range(30))})
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["status"] in ("queued", "running") and job["total"] == 30
        seen = list(events(client, job["id"]))
        assert seen[-1] == ("end", {"status": "succeeded"})
        done = [data for kind, data in seen if kind == "progress"][-1]
        assert done["progress"]["succeeded"] == 30
        models = client.get(f"/jobs/{job['id']}").json()["progress"]["models"]
        assert list(models) == ["simulated"] and models["simulated"]["calls"] == 30
        assert models["simulated"]["prompt_tokens"] > 0
        page = results(client, job["id"], offset=10, limit=5)
        assert [row["index"] for row in page] == [10, 11, 12, 13, 14]
        assert all(str(row["index"]) in str(row["output"]) for row in page)
        assert len(results(client, job["id"])) == 30
        assert [j["id"] for j in client.get("/jobs", params={"status": "succeeded"}).json()] == [
            job["id"]
        ]
        assert client.get("/stats").json()["jobs"]["succeeded"] == 1
        assert client.get("/openapi.json").status_code == 200
        # an ended job can be removed, with its items and results
        run_dir = service.folder / "runs" / job["id"]
        assert run_dir.is_dir()
        purged = client.delete(f"/jobs/{job['id']}", params={"purge": "true"})
        assert purged.status_code == 200 and purged.json()["deleted"] is True
        assert client.get(f"/jobs/{job['id']}").status_code == 404 and not run_dir.exists()


def test_results_as_csv_pages_with_the_runs_columns(service: Service) -> None:
    with service.client() as client:
        items = [{"id": i, "text": f"review {i}"} for i in range(12)]
        items[3] = {"id": 3, "text": "review 3", "lang": "de"}  # a key only one item has
        job = client.post("/jobs", json={"expression": "echo", "items": items}).json()
        assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
        url = f"/jobs/{job['id']}/results"
        page = client.get(url, params={"format": "csv", "offset": 8, "limit": 3})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(page.text)))
        header = rows[0]
        assert header[:5] == ["index", "status", "input.id", "input.text", "input.lang"]
        assert header[5:8] == ["output", "error_type", "error_message"]
        assert [row[0] for row in rows[1:]] == ["8", "9", "10"]  # the page's items only
        assert all(row[3] == f"review {row[0]}" and row[4] == "" for row in rows[1:])
        assert all(f"review {row[0]}" in row[5] for row in rows[1:])
        first = list(csv.reader(io.StringIO(client.get(url, params={"format": "csv"}).text)))
        assert first[0] == header and len(first) == 13 and first[4][4] == "de"
        wrong = client.get(url, params={"format": "xlsx"})
        assert wrong.status_code == 422 and "format" in wrong.text


def test_params_build_a_jobs_expression_and_reach_its_calls(service: Service) -> None:
    with service.client() as client:
        params = {"style": "Brief", "tone": "warm"}
        body = {"expression": "styled", "items": ["a", "b"], "settings": {"params": params}}
        job = client.post("/jobs", json=body).json()
        assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
        assert all("Brief, warm" in str(row["output"]) for row in results(client, job["id"]))
        missing = client.post("/jobs", json={"expression": "styled", "items": ["a"]})
        assert missing.status_code == 422 and "'styled' cannot be built" in missing.text
        assert "'style'" in missing.text
        taken = {**body, "settings": {"params": {"style": "x", "input": 1}}}
        refused = client.post("/jobs", json=taken)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "settings", "params"]
        assert "'input' is the keyword each item is passed as" in refused.text
        changed = {"settings": {"params": {"style": "Long"}}}
        again = client.post(f"/jobs/{job['id']}/retry", json=changed)
        assert again.status_code == 422 and "'params' cannot change on retry" in again.text
        assert sum(client.get("/stats").json()["jobs"].values()) == 1  # the refused left none


def test_a_token_guards_everything_but_health(service: Service) -> None:
    with httpx.Client(base_url=service.url) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/jobs").status_code == 401
        assert anonymous.post("/jobs", json={"expression": "echo", "items": [1]}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert anonymous.get("/stats", headers=wrong).status_code == 401


def test_the_token_can_come_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    running = Service(
        tmp_path / "svc", tmp_path / "data", latency=0.01, lease=1.0, token_from_env=True
    ).start()
    try:
        with httpx.Client(base_url=running.url) as anonymous:
            assert anonymous.get("/healthz").status_code == 200
            assert anonymous.get("/jobs").status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert anonymous.get("/stats", headers=wrong).status_code == 401
        with running.client() as client:
            assert client.get("/stats").status_code == 200
    finally:
        running.stop()


def test_serve_sends_the_jobs_calls_to_the_server_at_engine_url(
    tmp_path: Path, local_server: LocalServer
) -> None:
    (tmp_path / "data").mkdir()
    running = Service(
        tmp_path / "svc",
        tmp_path / "data",
        latency=0.0,
        lease=1.0,
        token_from_env=True,
        engine_url=local_server.url,
        stderr=tmp_path / "service.log",
    ).start()
    try:
        with running.client() as client:
            items = [f"item-{i}" for i in range(5)]
            job = client.post("/jobs", json={"expression": "echo", "items": items}).json()
            assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
            rows = results(client, job["id"])
        # symai's vLLM engine in the service asked the server, which echoes each prompt
        assert [row["index"] for row in rows] == list(range(5))
        assert all(str(row["output"]).startswith("echo:") for row in rows)
        assert all(f"item-{row['index']}" in str(row["output"]) for row in rows)
        assert local_server.stats()["ok"] == 5
    finally:
        running.stop()
    log = (tmp_path / "service.log").read_text(encoding="utf-8")  # what an operator sees
    assert "symbatcher serve: listening on http://127.0.0.1:" in log
    assert f"symbatcher: job {job['id']} (echo, 5 items) started by worker-" in log
    assert f"symbatcher: job {job['id']} succeeded after " in log
    assert "s: 5 of 5 items done, 0 failed\n" in log


def test_a_job_names_its_model_and_the_other_jobs_keep_the_services_engine(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """A job names its model; the service's engine answers the others (a simulated one
    here), and symai's DeepSeek engine the job's, over HTTP to the local server."""
    (tmp_path / "data").mkdir()
    env = {"TEST_HOSTED_AT": local_server.url, "TEST_WORKERS": "2", "DEEPSEEK_API_KEY": "sk-t"}
    env_without = {"OPENAI_API_KEY": ""}  # so the service has none for openai
    running = Service(
        tmp_path / "svc", tmp_path / "data", latency=0.01, lease=1.0, env={**env, **env_without}
    ).start()
    model = "deepseek:deepseek-v4-flash"
    try:
        with running.client() as client:
            jobs = {
                name: client.post(
                    "/jobs",
                    json={
                        "expression": "echo",
                        "items": [f"{name}-{i}" for i in range(30)],
                        "settings": {"workers": 4, **settings},
                    },
                ).json()
                for name, settings in (("hosted", {"model": model}), ("default", {}))
            }
            for job in jobs.values():
                assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
            hosted, default = (results(client, jobs[n]["id"]) for n in ("hosted", "default"))
            views = {name: client.get(f"/jobs/{job['id']}").json() for name, job in jobs.items()}
            models = views["hosted"]["progress"]["models"]
            bad, no_key = (  # a model symai does not know; one the service has no key for
                client.post(
                    "/jobs", json={"expression": "echo", "items": [1], "settings": {"model": name}}
                )
                for name in ("deepseek-v4-flash", "openai:gpt-5.4-mini")
            )
    finally:
        running.stop()
    assert all(
        str(r["output"]).startswith("echo:") and f"hosted-{r['index']}" in str(r["output"])
        for r in hosted
    )
    assert all(
        str(r["output"]).startswith("sim(") and f"default-{r['index']}" in str(r["output"])
        for r in default
    )
    assert len(hosted) == len(default) == 30 and local_server.stats()["ok"] == 30
    assert list(models) == [model] and models[model]["calls"] == 30 and models[model]["cost"] > 0
    assert views["hosted"]["model"] == model and views["default"]["model"] is None
    assert bad.status_code == 422 and f"did you mean {model!r}" in bad.text
    assert no_key.status_code == 422 and "no OPENAI_API_KEY in its environment" in no_key.text


def test_a_service_with_no_engine_of_its_own_takes_jobs_that_name_their_model(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """symai has no 'neurosymbolic' engine where it starts, but DeepSeek's key is set: the
    service starts and runs jobs on a model; a job that names none is refused at once,
    as is a retry that takes its model away (not left to fail when it runs)."""
    (tmp_path / "data").mkdir()
    model = "deepseek:deepseek-v4-flash"
    env = {"TEST_HOSTED_AT": local_server.url, "TEST_NO_ENGINE": "1", "DEEPSEEK_API_KEY": "sk-t"}
    stderr = tmp_path / "stderr"
    running = Service(tmp_path / "svc", tmp_path / "data", 0.0, 1.0, env=env, stderr=stderr)
    running.start()
    try:
        with running.client() as client:
            stats = client.get("/stats").json()
            job = client.post(
                "/jobs",
                json={"expression": "echo", "items": ["a", "b", "c"], "settings": {"model": model}},
            ).json()
            assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
            answers = results(client, job["id"])
            modelless = client.post("/jobs", json={"expression": "echo", "items": ["x"]})
            unmodelled = client.post(f"/jobs/{job['id']}/retry", json={"settings": {"model": None}})
            listed = client.get("/jobs").json()
    finally:
        running.stop()
    assert stats["default_engine"] is False
    assert len(answers) == 3 and all(  # DeepSeek's answers (the server echoes)
        str(r["output"]).startswith("echo:") and x in str(r["output"])
        for r, x in zip(answers, "abc", strict=True)
    )
    assert local_server.stats()["ok"] == 3
    refusal = "this service has no engine of its own: name a model in settings.model"
    assert modelless.status_code == 422 and refusal in modelless.text
    assert unmodelled.status_code == 422 and refusal in unmodelled.text
    assert [j["id"] for j in listed] == [job["id"]]  # the refused left no job
    assert "takes only jobs that name a model in settings.model; keys set: DEEPSEEK_API_KEY" in (
        stderr.read_text()
    )


def test_keep_days_removes_an_ended_job_with_its_results(
    tmp_path: Path, local_server: LocalServer
) -> None:
    (tmp_path / "data").mkdir()
    keep = ("--keep-days", "0.00005")  # 4.3 s; a sweep every second
    running = Service(
        tmp_path / "svc",
        tmp_path / "data",
        0.0,
        1.0,
        True,
        engine_url=local_server.url,
        options=keep,
    ).start()
    try:
        with running.client() as client:
            job = client.post("/jobs", json={"expression": "echo", "items": ["a", "b"]}).json()
            assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
            assert len(results(client, job["id"])) == 2  # kept while its term runs
            assert (tmp_path / "svc" / "runs" / job["id"]).is_dir()
            for _ in range(600):  # a look every 50 ms, for up to 30 s
                if client.get(f"/jobs/{job['id']}").status_code == 404:
                    break
                threading_wait(0.05)
            else:
                raise AssertionError("the ended job was still there after 30 s")
            assert client.get("/jobs").json() == []
            assert client.get(f"/jobs/{job['id']}/results").status_code == 404
        assert not (tmp_path / "svc" / "runs" / job["id"]).exists()
    finally:
        running.stop()
    assert running.process is not None and running.process.returncode == 143  # SIGTERM


def test_bad_requests_get_clear_4xx(service: Service, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text('"x"\n', encoding="utf-8")
    inside = service.data_dir / "items.jsonl"
    inside.write_text('"a"\n"b"\n', encoding="utf-8")
    with service.client() as client:
        unknown = client.post("/jobs", json={"expression": "os.system", "items": [1]})
        assert unknown.status_code == 422 and "os.system" in unknown.text
        malformed = client.post(
            "/jobs", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 422
        bad = client.post(
            "/jobs", json={"expression": "echo", "items": [1], "settings": {"workers": 0}}
        )
        assert bad.status_code == 422 and "workers" in bad.text
        capped = client.post(
            "/jobs",
            json={"expression": "echo", "items": [1], "settings": {"max_inflight_batches": 0}},
        )
        assert capped.status_code == 422 and "max_inflight_batches" in capped.text
        lingering = client.post(
            "/jobs", json={"expression": "echo", "items": [1], "settings": {"linger": -1}}
        )
        assert lingering.status_code == 422 and "linger" in lingering.text
        unpriced = {"prices": {"gpt-x": [1, -2]}}
        priced = client.post(
            "/jobs", json={"expression": "echo", "items": [1], "settings": unpriced}
        )
        assert priced.status_code == 422 and "prices" in priced.text and "gpt-x" in priced.text
        extra = client.post("/jobs", json={"expression": "echo", "items": [1], "wobble": 1})
        assert extra.status_code == 422 and "wobble" in extra.text
        both = client.post("/jobs", json={"expression": "echo", "items": [1], "path": str(inside)})
        assert both.status_code == 422
        forbidden = client.post("/jobs", json={"expression": "echo", "path": str(outside)})
        assert forbidden.status_code == 403
        huge = client.post(
            "/jobs",
            content=b"x" * (11 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413
        assert client.get("/jobs/nope").status_code == 404
        from_file = client.post("/jobs", json={"expression": "echo", "path": str(inside)})
        assert from_file.status_code == 201 and from_file.json()["total"] == 2
        # a relative path is in the data folder, not the server's working directory
        relative = client.post("/jobs", json={"expression": "echo", "path": "items.jsonl"})
        assert relative.status_code == 201 and relative.json()["total"] == 2
        escaping = client.post("/jobs", json={"expression": "echo", "path": "../elsewhere.jsonl"})
        assert escaping.status_code == 403
        # a bad record is named, and no job is left of it
        broken = service.data_dir / "broken.jsonl"
        broken.write_text("".join(f'"{i}"\n' for i in range(1500)) + "{oops\n", encoding="utf-8")
        before = len(client.get("/jobs").json())
        bad_file = client.post("/jobs", json={"expression": "echo", "path": "broken.jsonl"})
        assert bad_file.status_code == 422 and "line 1501" in bad_file.text
        missing = client.post("/jobs", json={"expression": "echo", "path": "nothing.jsonl"})
        assert missing.status_code == 422 and "nothing.jsonl" in missing.text
        assert len(client.get("/jobs").json()) == before


def submit_and_wait(client: httpx.Client, items: int, done: int) -> dict[str, Any]:
    """Submit an echo job, and return once its progress events show ``done`` items."""
    body = {"expression": "echo", "items": list(range(items)), "settings": {"workers": 2}}
    job: dict[str, Any] = client.post("/jobs", json=body).json()
    for kind, data in events(client, job["id"]):
        if kind == "progress" and (data["progress"]["done"] or 0) >= done:
            return job
    raise AssertionError("the job ended before it got that far")


def test_cancel_a_running_job(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    slow = Service(tmp_path / "svc", tmp_path / "data", latency=0.05, lease=0.6).start()
    try:
        with slow.client() as client:
            job = submit_and_wait(client, 300, done=4)
            running = client.delete(f"/jobs/{job['id']}", params={"purge": "true"})
            assert running.status_code == 409 and "is running: cancel it first" in running.text
            assert client.delete(f"/jobs/{job['id']}").status_code == 200
            final = list(events(client, job["id"]))[-1]
            assert final == ("end", {"status": "cancelled"})
            kept = results(client, job["id"])
            succeeded = [r for r in kept if r["status"] == "succeeded"]
            assert 4 <= len(succeeded) < 300  # what finished is kept; the rest never started
            # queued again, it goes on from there: the rest run, what succeeded is kept
            again = client.post(f"/jobs/{job['id']}/retry")
            assert again.status_code == 200 and again.json()["status"] == "queued"
            assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
            rows = results(client, job["id"], limit=1000)
            assert [r["index"] for r in rows] == list(range(300))
            assert all(r["status"] == "succeeded" for r in rows)
            assert all(f"\n{r['index']}\n" in str(r["output"]) for r in rows)  # its own
            assert rows[: len(kept)] == kept  # kept as they were, not run again
            done = client.post(f"/jobs/{job['id']}/retry")
            assert done.status_code == 409 and "only a failed or cancelled" in done.text
            assert client.post("/jobs/nope/retry").status_code == 404
    finally:
        slow.stop()


def test_a_job_that_reached_its_budget_is_retried_with_a_larger_one(service: Service) -> None:
    priced = {"prices": {"simulated": [10_000, 10_000]}, "workers": 2}  # ~$0.15 an item
    body = {"expression": "echo", "items": list(range(40)), "settings": {**priced, "max_cost": 1}}
    with service.client() as client:
        job = client.post("/jobs", json=body).json()
        assert list(events(client, job["id"]))[-1] == ("end", {"status": "failed"})
        ended = client.get(f"/jobs/{job['id']}").json()
        done = ended["progress"]["done"]
        assert 1 <= done < 40
        told = ended["error"]  # with what the rest costs, and the budget that finishes it
        assert told.startswith("budget reached; the rest of the items are pending (")
        assert f"({40 - done:,} of them: about $" in told
        per_item = float(told.split(" an item")[0].rsplit("at $", 1)[1])
        need = float(told.split("retry with settings.max_cost of about $")[1].split(" ")[0])
        assert per_item == pytest.approx(ended["progress"]["cost"] / done, rel=0.05)
        assert need == pytest.approx(40 * per_item, rel=0.05)
        again = client.post(f"/jobs/{job['id']}/retry")  # the same budget: spent already
        assert again.status_code == 200
        assert list(events(client, job["id"]))[-1] == ("end", {"status": "failed"})
        for wrong, where in (
            ({"max_cost": -1}, ["body", "settings", "max_cost"]),
            ({"workerz": 2}, ["body", "settings", "workerz"]),
        ):
            refused = client.post(f"/jobs/{job['id']}/retry", json={"settings": wrong})
            assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == where
        fixed = client.post(f"/jobs/{job['id']}/retry", json={"settings": {"as": "x"}})
        assert fixed.status_code == 422 and "'as' cannot change on retry" in fixed.text
        assert client.get(f"/jobs/{job['id']}").json()["status"] == "failed"  # refused: as it was
        larger = client.post(f"/jobs/{job['id']}/retry", json={"settings": {"max_cost": 100}})
        assert larger.status_code == 200 and larger.json()["status"] == "queued"
        assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
        rows = results(client, job["id"], limit=100)
        assert [r["index"] for r in rows] == list(range(40))
        assert all(r["status"] == "succeeded" for r in rows)
        assert 1.0 <= sum(r["cost"] for r in rows) <= 100  # one budget over all its runs


def test_a_trial_job_tells_what_the_rest_would_cost_and_goes_on_when_retried(
    service: Service,
) -> None:
    """``settings.limit``: the first items alone, the job's ``trial`` saying what the
    others would cost at their rate; a retry with a larger limit or none goes on."""
    priced = {"prices": {"simulated": [10_000, 10_000]}, "workers": 2}
    body = {"expression": "echo", "items": list(range(12)), "settings": {**priced, "limit": 4}}
    with service.client() as client:
        job = client.post("/jobs", json=body).json()
        assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
        ended = client.get(f"/jobs/{job['id']}").json()
        tried = results(client, job["id"])
        same = client.post(f"/jobs/{job['id']}/retry", json={"settings": {"limit": 4}})
        more = client.post(f"/jobs/{job['id']}/retry", json={"settings": {"limit": 8}})
        assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
        after_more = results(client, job["id"])
        rest = client.post(f"/jobs/{job['id']}/retry", json={"settings": {"limit": None}})
        assert list(events(client, job["id"]))[-1] == ("end", {"status": "succeeded"})
        final = client.get(f"/jobs/{job['id']}").json()
        rows = results(client, job["id"])
        plain = client.post("/jobs", json={"expression": "echo", "items": [1]}).json()
        assert list(events(client, plain["id"]))[-1] == ("end", {"status": "succeeded"})
        done = client.post(f"/jobs/{plain['id']}/retry")
    trial, cost = ended["trial"], ended["progress"]["cost"]
    assert [r["index"] for r in tried] == [0, 1, 2, 3] and ended["total"] == 12
    assert trial["limit"] == 4 and trial["items_left"] == 8 and cost > 0
    assert trial["cost_per_item"] == pytest.approx(cost / 4)
    assert trial["cost_left"] == pytest.approx(cost / 4 * 8)
    assert same.status_code == 422 and "a trial of 4 items: go on with a larger" in same.text
    assert more.status_code == 200 and [r["index"] for r in after_more] == list(range(8))
    assert after_more[:4] == tried  # kept as they were, not run again
    assert rest.status_code == 200 and [r["index"] for r in rows] == list(range(12))
    assert rows[:8] == after_more and final["trial"] is None
    assert done.status_code == 409 and "or a trial (settings.limit)" in done.text


def _started_with_a_long_job(tmp_path: Path) -> tuple[Service, Path, str, str]:
    """A service running a 50 s job, with one more job queued behind it."""
    (tmp_path / "data").mkdir()
    log = tmp_path / "service.log"
    service = Service(tmp_path / "svc", tmp_path / "data", latency=0.05, lease=30, stderr=log)
    service.start()
    with service.client() as client:
        job = submit_and_wait(client, 2000, done=4)
        later = client.post("/jobs", json={"expression": "echo", "items": [1]}).json()
    return service, log, job["id"], later["id"]


def _wait_for_line(log: Path, text: str) -> None:
    for _ in range(600):  # polled: the log is all there is to watch
        if text in log.read_text(encoding="utf-8"):
            return
        threading_wait(0.1)
    raise AssertionError(f"the service never said {text!r}")


def _states(tmp_path: Path, *job_ids: str) -> list[str]:
    queue = JobQueue(tmp_path / "svc" / "jobs.sqlite")
    try:
        return [queue.get(job_id).state for job_id in job_ids]
    finally:
        queue.close()


def test_ctrl_c_waits_for_the_running_job_and_a_second_one_gives_it_back(
    tmp_path: Path,
) -> None:
    """The first Ctrl-C starts no new job and waits for the running one, and says so (the
    wait may be long); a second stops now: the running job's items in flight finish and
    it goes back to the queue, to resume from its items."""
    service, log, job, later = _started_with_a_long_job(tmp_path)
    try:
        assert service.process is not None
        service.process.send_signal(signal.SIGINT)
        _wait_for_line(log, f"waiting for 1 running job(s) to finish ({job})")
        service.process.send_signal(signal.SIGINT)
        service.process.wait(timeout=30)
    finally:
        service.kill()
    assert "stopping now; 1 running job(s) finish their items in flight" in log.read_text()
    assert _states(tmp_path, job, later) == ["queued", "queued"]


def test_sigterm_gives_the_running_job_back_to_the_queue_at_once(tmp_path: Path) -> None:
    """A container runtime's SIGTERM (its grace period is far shorter than a job) stops
    now, where it used to end the process before the job was given back."""
    service, log, job, later = _started_with_a_long_job(tmp_path)
    try:
        assert service.process is not None
        service.process.send_signal(signal.SIGTERM)
        service.process.wait(timeout=30)
    finally:
        service.kill()
    assert f"go back to the queue ({job})" in log.read_text(encoding="utf-8")
    assert _states(tmp_path, job, later) == ["queued", "queued"]


def test_a_killed_server_loses_nothing(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    first = Service(tmp_path / "svc", tmp_path / "data", latency=0.05, lease=1.0).start()
    try:
        with first.client() as client:
            job = submit_and_wait(client, 80, done=6)
        first.kill()  # SIGKILL mid-job
    finally:
        first.stop()
    second = Service(tmp_path / "svc", tmp_path / "data", latency=0.01, lease=1.0).start()
    try:
        with second.client() as client:
            final = list(events(client, job["id"]))[-1]
            assert final == ("end", {"status": "succeeded"})
            rows = results(client, job["id"], limit=1000)
            assert sorted(row["index"] for row in rows) == list(range(80))  # each once
            assert all(row["status"] == "succeeded" for row in rows)
    finally:
        second.stop()

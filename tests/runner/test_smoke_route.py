"""The runner's smoke route and secrets file: a real runner subprocess, real HTTP."""

from __future__ import annotations

import hashlib
import json
import os

import pandas as pd
import requests

from jupyter_deploy_contract import CONTROL_HEADER, CONTROL_KEY_ENV, SECRETS_FILE_ENV, SMOKE_PATH

from .test_runner import Runner, make_manifest, param, run_to_exit, write_bundle

KEY = "the-managers-control-key"
FRAME = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 0.0]})
SAMPLE = {"kind": "dataframe", "columns": ["a", "b"], "dtypes": {"a": "float64", "b": "float64"},
          "records": FRAME.to_dict(orient="records")}


def total(data: pd.DataFrame) -> list:
    return (data["a"] + data["b"]).tolist()


def ratio(data: pd.DataFrame) -> list:
    return [a / b for a, b in zip(data["a"], data["b"])]  # b is 0 in the second row: ZeroDivisionError here


def as_object(data: pd.DataFrame) -> object:
    return object()


def scale(n: int) -> int:
    return n * 2


def secret_facts(data: pd.DataFrame) -> dict:
    value = os.environ.get("DB_URL", "")
    return {"sha": hashlib.sha256(value.encode()).hexdigest(), "mode": os.environ.get("MODE"),
            "control_visible": CONTROL_KEY_ENV in os.environ, "file_visible": SECRETS_FILE_ENV in os.environ}


FUNCTIONS = {"total": total, "ratio": ratio, "as_object": as_object, "scale": scale, "secret_facts": secret_facts}
PARAMS = {"total": [param("data", "dataframe")], "ratio": [param("data", "dataframe")],
          "as_object": [param("data", "dataframe")], "scale": [param("n", "int")],
          "secret_facts": [param("data", "dataframe")]}


def start(tmp_path, monkeypatch, secrets: dict | None = None) -> Runner:
    bundle = write_bundle(tmp_path / "bundle", make_manifest("smoke", PARAMS, sample=SAMPLE), FUNCTIONS)
    monkeypatch.setenv(CONTROL_KEY_ENV, hashlib.sha256(KEY.encode()).hexdigest())
    if secrets is not None:
        path = tmp_path / "secrets.json"
        path.write_text(json.dumps(secrets))
        monkeypatch.setenv(SECRETS_FILE_ENV, str(path))
    runner = Runner(bundle, tmp_path / "logs")
    runner.wait_healthy()
    return runner


def smoke(runner: Runner, entrypoint: str, key: str | None = KEY) -> requests.Response:
    headers = {CONTROL_HEADER: key} if key is not None else {}
    return requests.post(f"{runner.url}{SMOKE_PATH}{entrypoint}", headers=headers, timeout=60)


def test_the_smoke_route_answers_only_the_key_holder(tmp_path, monkeypatch):
    runner = start(tmp_path, monkeypatch)
    try:
        for key in (None, "", "wrong"):
            resp = smoke(runner, "total", key)
            assert resp.status_code == 404 and resp.json()["reason"] == "unknown-entrypoint"
        # Ordinary calls are untouched, and a raising one still gets no traceback.
        assert runner.post("total", {"data": SAMPLE["records"]}).json() == [4.0, 2.0]
        failed = runner.post("ratio", {"data": SAMPLE["records"]})
        assert failed.status_code == 500 and "Traceback" not in failed.text
    finally:
        runner.stop()


def test_each_outcome_of_an_entrypoint_on_the_sample(tmp_path, monkeypatch):
    runner = start(tmp_path, monkeypatch)
    try:
        assert smoke(runner, "total").json() == {"entrypoint": "total", "called": True, "ok": True,
                                                  "result": [4.0, 2.0]}

        raised = smoke(runner, "ratio").json()
        assert raised["called"] and not raised["ok"] and raised["kind"] == "raised"
        assert raised["exception"] == "ZeroDivisionError"
        assert raised["error"] == "ZeroDivisionError: float division by zero"
        # The user's frames only: the function and its comprehension, with this file's line numbers.
        line = ratio.__code__.co_firstlineno + 1
        assert [(f["function"], f["line"]) for f in raised["frames"]][0] == ("ratio", line)
        assert all("jupyter_deploy_runner" not in f["file"] for f in raised["frames"])
        assert "jupyter_deploy_runner" not in raised["traceback"] and "ZeroDivisionError" in raised["traceback"]

        unserialisable = smoke(runner, "as_object").json()
        assert unserialisable["kind"] == "unserialisable" and "returned object" in unserialisable["error"]

        skipped = smoke(runner, "scale").json()
        assert skipped == {"entrypoint": "scale", "called": False,
                           "why": "its first parameter n takes int and the sample is a DataFrame"}
        # The failure went to the service log as a normal call's does.
        assert "smoke test: entrypoint ratio raised ZeroDivisionError" in runner.stderr()
    finally:
        runner.stop()


def test_secrets_file_sets_the_environment_before_the_payload_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("MODE", "prod")
    runner = start(tmp_path, monkeypatch, secrets={"DB_URL": "postgres://u:pw@db/x"})
    try:
        facts = runner.post("secret_facts", {"data": SAMPLE["records"]}).json()
        assert facts == {"sha": hashlib.sha256(b"postgres://u:pw@db/x").hexdigest(), "mode": "prod",
                         "control_visible": False, "file_visible": False}
    finally:
        runner.stop()


def test_an_unreadable_secrets_file_refuses_to_start_without_showing_it(tmp_path, monkeypatch):
    bundle = write_bundle(tmp_path / "bundle", make_manifest("smoke", PARAMS, sample=SAMPLE), FUNCTIONS)
    bad = tmp_path / "secrets.json"
    bad.write_text('{"DB_URL": "postgres://leak" ')
    monkeypatch.setenv(SECRETS_FILE_ENV, str(bad))
    done = run_to_exit(bundle)
    assert done.returncode == 3, done.stderr
    assert "cannot read the secrets file" in done.stderr and "leak" not in done.stderr + done.stdout

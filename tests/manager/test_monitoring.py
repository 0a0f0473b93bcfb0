"""Monitored entrypoints: their calls are kept with a bound and read back as JSON or CSV."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import requests

from jupyter_deploy.capture import capture

WEIGHTS = {"a": 2.0, "b": -1.0}


def score(data: pd.DataFrame) -> list:
    """A linear score per row."""
    return (data["a"] * WEIGHTS["a"] + data["b"] * WEIGHTS["b"]).tolist()


def echo(x: int) -> int:
    """Not monitored."""
    return x


def deploy(manager, keep_args=None):
    """Deploy with ``score`` monitored, through the SDK client."""
    client = manager.client()
    bundle = capture([score, echo], name="scored", sample=pd.DataFrame({"a": [1.0], "b": [2.0]}), monitor=["score"])
    answer = client.upload("scored", bundle)
    final = [e for e in client.events("scored", answer["version"]) if e["kind"] == "result"][-1]
    assert final["status"] == "running", final
    return answer["token"]


def test_monitored_calls_are_kept_and_read_back(manager_factory):
    manager = manager_factory("process", extra_args=["--ManagerApp.monitor_keep=150"])
    token = deploy(manager)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{manager.url}/services/scored"
    for i in range(260):
        rows = [{"a": float(i), "b": 1.0}]
        assert requests.post(f"{url}/score", json={"data": rows}, headers=headers).json() == [2.0 * i - 1.0]
    assert requests.post(f"{url}/echo", json={"x": 3}, headers=headers).json() == 3
    bad = requests.post(f"{url}/score", json={"data": [{"a": 1.0}]}, headers=headers)
    assert bad.status_code == 422

    resp = requests.get(f"{manager.url}/api/services/scored/monitor", params={"limit": 100000},
                        headers=manager.headers())
    records = resp.json()["records"]
    # Bounded: at most keep (+ the trimming step) are kept, the newest ones, oldest first.
    assert 150 <= len(records) <= 250
    assert {r["entrypoint"] for r in records} == {"score"}
    last_ok = records[-2]
    assert json.loads(last_ok["request"]) == {"data": [{"a": 259.0, "b": 1.0}]}
    assert json.loads(last_ok["response"]) == [517.0]
    assert records[-1]["status"] == 422 and records[-1]["version"] == "0.1.0"
    assert records[0]["time"] <= records[-1]["time"]

    resp = requests.get(f"{manager.url}/api/services/scored/monitor", params={"format": "csv", "limit": 5},
                        headers=manager.headers())
    assert resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 5 and rows[-1]["status"] == "422"
    assert json.loads(rows[-2]["response"]) == [517.0]

    # An invoke token cannot read what others asked.
    resp = requests.get(f"{manager.url}/api/services/scored/monitor", headers=headers)
    assert resp.status_code == 403
    resp = requests.get(f"{manager.url}/api/services/scored/monitor", params={"format": "xml"},
                        headers=manager.headers())
    assert resp.status_code == 422

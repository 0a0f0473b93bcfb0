"""What the runner's dispatch costs a call: fast lane (the default), worker pool only, IO loop (--threads 0).

wrk against a runner straight (no manager) with a trivial entrypoint (echo) or a small model's predict
(iris), rounds interleaved; prints requests/s and the runner's CPU time a call. Asserts nothing.

Usage: python bench/runner_dispatch.py [--kind echo|iris] [--rounds 3] [--duration 4] [--connections 1 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle
import pandas as pd
import requests
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from jupyter_deploy.bundle import extract, pack

MODES = {"lane": [], "pool": ["--inline-below", "0"], "loop": ["--threads", "0"]}
"""Runner arguments of each dispatch."""

X = load_iris(as_frame=True).data
clf = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, load_iris().target)


def echo(x: int) -> int:
    """A trivial entrypoint: what dispatch costs when the function costs nothing."""
    return x


def predict(data: pd.DataFrame) -> list:
    """A small model's predict."""
    return clf.predict(data).tolist()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bundle(kind: str, dest: Path) -> str:
    """Extract a bundle serving ``kind`` as entrypoint ``f`` into ``dest``; return a request body for it."""
    if kind == "echo":
        params, fn, sample, body = [{"name": "x", "type": "int"}], echo, None, {"x": 1}
    else:
        params, fn = [{"name": "data", "type": "dataframe"}], predict
        sample = {"kind": "dataframe", "columns": list(X.columns), "dtypes": {c: str(t) for c, t in X.dtypes.items()},
                  "records": X.head(5).to_dict(orient="records")}
        body = {"data": X.head(5).to_dict(orient="records")}
    for p in params:
        p.update(kind="POSITIONAL_OR_KEYWORD", annotation=p["type"], required=True)
    manifest = {"name": "bench", "version": None, "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
                "cloudpickle": cloudpickle.__version__, "requirements": [], "sample": sample,
                "entrypoints": [{"name": "f", "doc": "", "signature": "", "parameters": params, "returns": None}]}
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    extract(pack(manifest, cloudpickle.dumps({"entrypoints": {"f": fn}}, protocol=5)).data, dest)
    return json.dumps(body)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(bundle_dir: Path, body: str, args: list[str], connections: int, duration: int) -> tuple[float, float]:
    """One wrk run against a fresh runner: (requests/s, runner CPU microseconds a call)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/f"
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_deploy_runner", "--bundle", str(bundle_dir),
                             "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        for _ in range(100):  # warm up: the runner learns the entrypoint is quick
            requests.post(url, data=body, timeout=10)
        script = bundle_dir.parent / "post.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                          'wrk.headers["Content-Type"] = "application/json"\n')
        before = cpu_seconds(proc.pid)
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(script), url],
                             capture_output=True, text=True, check=True).stdout
        used = cpu_seconds(proc.pid) - before
        calls = int(re.search(r"(\d+) requests in", out).group(1))
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), 1e6 * used / max(1, calls)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    """Print requests/s and CPU a call per dispatch mode and connection count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("echo", "iris"), default="echo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = Path(tmp) / "bundle"
        body = bundle(args.kind, bundle_dir)
        for connections in args.connections:
            results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
            for _ in range(args.rounds):
                for mode, mode_args in MODES.items():
                    results[mode].append(run(bundle_dir, body, mode_args, connections, args.duration))
            for mode, runs in results.items():
                print(f"{args.kind} c={connections} {mode:5s} {statistics.median(r[0] for r in runs):8.0f} calls/s  "
                      f"{statistics.median(r[1] for r in runs):6.0f} us CPU a call", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

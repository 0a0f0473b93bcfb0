"""Deploy and proxy benchmarks. Prints figures and ratios; asserts nothing.

- cold deploy: a requirement set the manager has never built (empty cache, no dependency image),
  from the deploy() call to the first good answer;
- warm redeploy: same requirements, a retrained model, from the call to the first good answer;
- proxy cost: wrk against /services/iris/predict through the manager and straight to the runner,
  same payload, same run: p50, p99, requests/s;
- the idle manager's RSS.

Usage: python bench/deploy.py [--runtimes process docker] [--duration 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import requests
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

import jupyter_deploy
from jupyter_deploy.capture import capture
from jupyter_deploy.progress import Progress
from jupyter_deploy_manager.deployments import DeploymentService

IRIS = load_iris(as_frame=True)
X = IRIS.data
ROWS = X.head(5)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(n_estimators: int) -> RandomForestClassifier:
    """A small iris model."""
    return RandomForestClassifier(n_estimators=n_estimators, random_state=0).fit(X, IRIS.target)


clf = train(20)


def echo(x: int) -> int:
    """A trivial entrypoint: what the proxy costs when the function costs nothing."""
    return x


def predict(data: pd.DataFrame) -> list:
    """Predict the iris class of each row."""
    return clf.predict(data).tolist()


class Manager:
    """A manager subprocess with a fresh data dir."""

    def __init__(self, runtime: str, cache_dir: Path):
        self.runtime = runtime
        self.work = Path(tempfile.mkdtemp(prefix=f"jd-bench-{runtime}-"))
        # Passable (not listable): as root, each runner runs as a user of its own and must reach its stage.
        os.chmod(self.work, 0o711)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(12)
        env = dict(os.environ, JUPYTER_DEPLOY_ADMIN_PASSWORD=self.password, JUPYTER_DEPLOY_CACHE_DIR=str(cache_dir))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_deploy_manager.app", "--port", str(self.port), "--runtime", runtime,
             "--data-dir", str(self.work / "data")],
            env=env, stdout=open(self.work / "manager.log", "wb"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/api/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        else:
            raise SystemExit(f"manager ({runtime}) did not start; see {self.work / 'manager.log'}")
        self.token = requests.post(
            f"{self.url}/api/login", json={"username": "admin", "password": self.password}
        ).json()["token"]

    def rss_mb(self) -> float:
        """Resident memory of the manager process."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        """Delete the service, stop the manager, remove its data."""
        try:
            requests.delete(f"{self.url}/api/services/iris", headers={"Authorization": f"Bearer {self.token}"}, timeout=120)
        except requests.RequestException:
            pass
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        instance = (self.work / "data" / "instance")
        if instance.exists():
            from tests.harness import remove_docker_objects

            remove_docker_objects(instance.read_text().strip())
        shutil.rmtree(self.work, ignore_errors=True)


def first_good_answer(manager: Manager, token: str, expected: list, timeout: float = 600) -> None:
    """Wait for the service to answer with the expected prediction."""
    body = {"data": ROWS.to_dict(orient="records")}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = requests.post(f"{manager.url}/services/iris/predict", json=body,
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)
        if resp.ok and resp.json() == expected:
            return
        time.sleep(0.02)
    raise SystemExit("no good answer")


def timed_deploy(manager: Manager) -> float:
    """Seconds from deploy() to the first good answer."""
    started = time.monotonic()
    quiet = Progress("iris", rich=False, stream=open(os.devnull, "w"))
    dep = jupyter_deploy.deploy("iris", [predict], sample=X.head(), url=manager.url, token=manager.token, progress=quiet)
    first_good_answer(manager, dep.token, clf.predict(ROWS).tolist())
    return time.monotonic() - started


def drop_dependency_image(lock_hash: str) -> None:
    """Make the requirement set new to the Docker engine too."""
    try:
        import docker

        client = docker.from_env()
        for image in client.images.list(filters={"reference": f"jupyter-deploy/deps:{lock_hash}"}):
            client.images.remove(image.id, force=True)
    except Exception:  # noqa: BLE001 - nothing to drop
        pass


def wrk_script(token: str, body: str | None = None, extra: str = "") -> Path:
    """A wrk Lua script POSTing ``body`` (5 iris rows by default) with the token, plus ``extra`` Lua."""
    body = body or json.dumps({"data": ROWS.to_dict(orient="records")})
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n' + extra
    )
    return script


def wrk(url: str, token: str, duration: int, connections: int, body: str | None = None) -> dict[str, float]:
    """Run wrk with a POST body; return p50/p99 in ms and requests/s."""
    script = wrk_script(token, body, extra=(
        "done = function(summary, latency, requests)\n"
        "  io.write(string.format('P50 %f\\nP99 %f\\nERRORS %d\\n', latency:percentile(50), latency:percentile(99),"
        " summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))\n"
        "end\n"
    ))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    script.unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = float(re.search(r"P50 ([\d.]+)", out).group(1)) / 1000
    p99 = float(re.search(r"P99 ([\d.]+)", out).group(1)) / 1000
    errors = int(re.search(r"ERRORS (\d+)", out).group(1))
    return {"p50_ms": p50, "p99_ms": p99, "rps": rps, "errors": errors}


def runner_url(manager: Manager) -> str:
    """The main version's runner address, from the runtime (bench-only peek at the manager's view)."""
    info = requests.get(f"{manager.url}/api/services/iris", headers={"Authorization": f"Bearer {manager.token}"}).json()
    endpoint = info.get("endpoint")
    if not endpoint:
        raise SystemExit("the manager does not report the runner's endpoint")
    return endpoint


def bench_runtime(runtime: str, args: argparse.Namespace) -> dict[str, float]:
    """All figures for one runtime."""
    global clf
    cache = Path(tempfile.mkdtemp(prefix="jd-bench-cache-"))
    os.chmod(cache, 0o711)
    manager = Manager(runtime, cache)
    results: dict[str, float] = {}
    try:
        time.sleep(1.0)
        results["idle_rss_mb"] = manager.rss_mb()
        bundle = capture([predict], name="iris", sample=X.head())
        if runtime == "docker":
            drop_dependency_image(DeploymentService.lock_for(bundle.manifest).hash)
        clf = train(20)
        results["cold_deploy_s"] = timed_deploy(manager)
        warm = []
        for n in (30, 40, 50):
            clf = train(n)
            warm.append(timed_deploy(manager))
        results["warm_redeploy_s"] = sorted(warm)[len(warm) // 2]
        results["warm_redeploy_all_s"] = warm  # type: ignore[assignment]
        if shutil.which("wrk"):
            token = manager.token
            direct_url = f"{runner_url(manager)}/predict"
            proxy_url = f"{manager.url}/services/iris/predict"
            # One connection shows the added latency without queueing; several show throughput.
            for label, conns in (("c1", 1), (f"c{args.connections}", args.connections)):
                direct = wrk(direct_url, token, args.duration, conns)
                proxied = wrk(proxy_url, token, args.duration, conns)
                results.update({f"{label}_direct_{k}": v for k, v in direct.items()})
                results.update({f"{label}_proxy_{k}": v for k, v in proxied.items()})
                results[f"{label}_proxy_added_p50_ms"] = proxied["p50_ms"] - direct["p50_ms"]
                results[f"{label}_proxy_throughput_ratio"] = proxied["rps"] / direct["rps"]
            # The same comparison with a function that costs nothing: the proxy's own latency.
            quiet = Progress("echo", rich=False, stream=open(os.devnull, "w"))
            jupyter_deploy.deploy("echo", [echo], url=manager.url, token=manager.token, progress=quiet)
            info = requests.get(f"{manager.url}/api/services/echo", headers={"Authorization": f"Bearer {token}"}).json()
            trivial = json.dumps({"x": 1})
            direct = wrk(f"{info['endpoint']}/echo", token, args.duration, 1, trivial)
            proxied = wrk(f"{manager.url}/services/echo/echo", token, args.duration, 1, trivial)
            results["echo_c1_direct_p50_ms"] = direct["p50_ms"]
            results["echo_c1_proxy_p50_ms"] = proxied["p50_ms"]
            results["echo_c1_proxy_added_p50_ms"] = proxied["p50_ms"] - direct["p50_ms"]
            results["echo_c1_proxy_throughput_ratio"] = proxied["rps"] / direct["rps"]
        results["rss_after_mb"] = manager.rss_mb()
    finally:
        manager.stop()
        shutil.rmtree(cache, ignore_errors=True)
    return results


def main() -> int:
    """Run the benchmarks and print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", default=["process", "docker"])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    targets = {"warm_redeploy_s": {"docker": 3.0, "process": 2.0}}
    for runtime in args.runtimes:
        print(f"\n== {runtime} ==", flush=True)
        results = bench_runtime(runtime, args)
        for key, value in results.items():
            target = targets.get(key, {}).get(runtime)
            shown = ", ".join(f"{v:.2f}" for v in value) if isinstance(value, list) else f"{value:.3f}"
            print(f"{key:28s} {shown}" + (f"   (target <= {target})" if target else ""), flush=True)
        if any(k.endswith("proxy_throughput_ratio") for k in results):
            print(f"{'targets':28s} proxy adds <= 1 ms at p50, keeps >= 80% throughput; idle RSS <= 120 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

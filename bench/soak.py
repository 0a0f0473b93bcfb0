"""Soak: a long run at 80% of the measured maximum through the manager, with promotes and killed runners.

- measures the maximum throughput of the iris model through the manager (wrk, 10 s);
- then runs wrk at about 80% of it for ``--minutes`` (default 10), while a promote switches main
  between two versions every minute and the main version's runner is killed every two minutes;
- prints requests, errors (non-2xx and socket errors), p50/p99, the rate reached, and the RSS of
  the manager and of the main runner at the start and the end (growth in %).

Figures only; nothing is asserted. Usage: python bench/soak.py [--runtime process|docker] [--minutes 10]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy as common  # noqa: E402  (the bench helpers of bench/deploy.py)

PROMOTE_EVERY = 60.0
"""Seconds between two promotes during the soak."""

KILL_EVERY = 120.0
"""Seconds between two kills of the main runner during the soak."""

LOAD_SHARE = 0.8
"""Fraction of the measured maximum the soak runs at."""

CONNECTIONS = 16
"""wrk connections, for the maximum and the soak."""


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (nan when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def runner_pid(manager: common.Manager, version: str) -> int | None:
    """The pid of a version's runner (process runtime: its command line names its stage; docker: the container's)."""
    if manager.runtime == "docker":
        import docker

        instance = (manager.work / "data" / "instance").read_text().strip()
        client = docker.from_env()
        for container in client.containers.list(filters={"label": [f"io.jupyter-deploy.instance={instance}",
                                                                    f"io.jupyter-deploy.version={version}"]}):
            return int(container.attrs["State"]["Pid"])
        return None
    needle = f"iris--{version}/bundle".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    return None


def paced_wrk(url: str, token: str, seconds: int, rate: float) -> dict[str, float]:
    """wrk at about ``rate`` requests/s (each connection waits between its calls); the summary figures."""
    wait_ms = max(0.0, CONNECTIONS * 1000.0 / rate)
    script = common.wrk_script(token, extra=(
        f"function delay() return {wait_ms:.3f} end\n"
        "done = function(summary, latency, requests)\n"
        "  io.write(string.format('P50 %f\\nP99 %f\\nREQUESTS %d\\nSTATUS %d\\nSOCKET %d\\n',"
        " latency:percentile(50), latency:percentile(99), summary.requests, summary.errors.status,"
        " summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))\n"
        "end\n"
    ))
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s",
                              str(script), url], capture_output=True, text=True, check=True).stdout
    finally:
        script.unlink()
    figures = {key.lower(): float(re.search(rf"{key} ([\d.]+)", out).group(1)) for key in
               ("P50", "P99", "REQUESTS", "STATUS", "SOCKET")}
    figures["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return figures


class Chaos(threading.Thread):
    """Promotes every minute and kills the main runner every two minutes, until told to stop."""

    def __init__(self, manager: common.Manager, versions: list[str]) -> None:
        super().__init__(daemon=True)
        self.manager, self.versions = manager, versions
        self.stop = threading.Event()
        self.promotes = self.kills = 0
        self.problems: list[str] = []

    def main_version(self) -> str:
        """The service's main version, as the manager says."""
        return requests.get(f"{self.manager.url}/api/services/iris", headers=self.headers, timeout=30).json()[
            "main_version"]

    @property
    def headers(self) -> dict[str, str]:
        """The admin token's header."""
        return {"Authorization": f"Bearer {self.manager.token}"}

    def run(self) -> None:
        """Alternate promotes and kills on their schedules."""
        started = time.monotonic()
        next_promote, next_kill = PROMOTE_EVERY, KILL_EVERY
        while not self.stop.wait(0.5):
            elapsed = time.monotonic() - started
            try:
                if elapsed >= next_promote:
                    next_promote += PROMOTE_EVERY
                    other = next(v for v in self.versions if v != self.main_version())
                    resp = requests.post(f"{self.manager.url}/api/services/iris/promote", json={"version": other},
                                         headers=self.headers, timeout=120)
                    self.promotes += 1
                    if not resp.ok:
                        self.problems.append(f"promote {other}: {resp.status_code} {resp.text[:120]}")
                if elapsed >= next_kill:
                    next_kill += KILL_EVERY
                    pid = runner_pid(self.manager, self.main_version())
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)
                        self.kills += 1
            except Exception as exc:  # noqa: BLE001 - keep soaking, report it
                self.problems.append(f"{type(exc).__name__}: {exc}")


def main() -> int:
    """Run the soak and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", default="process", choices=["process", "docker"])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="jd-soak-cache-"))
    os.chmod(cache, 0o711)
    manager = common.Manager(args.runtime, cache)
    try:
        quiet = common.Progress("iris", rich=False, stream=open(os.devnull, "w"))
        versions = []
        for n in (20, 21):
            common.clf = common.train(n)
            dep = common.jupyter_deploy.deploy("iris", [common.predict], sample=common.X.head(), url=manager.url,
                                               token=manager.token, progress=quiet)
            versions.append(dep.version)
        url = f"{manager.url}/services/iris/predict"
        common.first_good_answer(manager, manager.token, common.clf.predict(common.ROWS).tolist())
        peak = common.wrk(url, manager.token, 10, CONNECTIONS)
        target = LOAD_SHARE * peak["rps"]
        print(f"maximum through the manager: {peak['rps']:.0f} requests/s (p99 {peak['p99_ms']:.1f} ms); "
              f"soaking at {target:.0f}/s for {args.minutes:g} min", flush=True)
        main_pid = runner_pid(manager, versions[-1])
        start_rss = (manager.rss_mb(), rss_mb(main_pid) if main_pid else float("nan"))
        chaos = Chaos(manager, versions)
        chaos.start()
        soak = paced_wrk(url, manager.token, int(args.minutes * 60), target)
        chaos.stop.set()
        chaos.join(timeout=150)
        time.sleep(2.0)
        final_main = chaos.main_version()
        end_pid = runner_pid(manager, final_main)
        end_rss = (manager.rss_mb(), rss_mb(end_pid) if end_pid else float("nan"))
        errors = int(soak["status"] + soak["socket"])
        print(f"requests      {int(soak['requests'])} at {soak['rps']:.0f}/s")
        print(f"errors        {errors} ({int(soak['status'])} non-2xx, {int(soak['socket'])} socket) "
              f"over {chaos.kills} kills and {chaos.promotes} promotes")
        print(f"latency       p50 {soak['p50'] / 1000:.1f} ms, p99 {soak['p99'] / 1000:.1f} ms")
        for label, before, after in (("manager RSS", start_rss[0], end_rss[0]), ("runner RSS", start_rss[1], end_rss[1])):
            growth = 100.0 * (after - before) / before if before == before and before else float("nan")
            print(f"{label:13s} {before:.1f} MB -> {after:.1f} MB ({growth:+.1f}%)")
        print("goals         no errors beyond calls in flight to a killed runner; RSS growth under 5%")
        for problem in chaos.problems:
            print(f"chaos problem: {problem}")
    finally:
        manager.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

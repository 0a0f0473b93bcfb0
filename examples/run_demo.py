"""The main job, end to end: start a manager, deploy the iris model from its notebook, call it from another.

Run by ``bash scripts/demo.sh``. Prints what each notebook printed, and the answers.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import requests
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE / "notebooks"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until the manager answers its health check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the manager exited with status {proc.returncode}")
        try:
            if requests.get(f"{url}/api/health", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit("the manager did not answer within 60 s")


def run_notebook(path: Path, env_dir: Path) -> nbformat.NotebookNode:
    """Execute a notebook in a real kernel; print its text outputs."""
    print(f"\n=== {path.name} ===", flush=True)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(env_dir)}}).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            if text:
                print(text.rstrip())
    return nb


def main() -> int:
    """Start a manager, run both notebooks against it, clean up."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runtime", default="auto", choices=["auto", "docker", "process"])
    parser.add_argument("--keep", action="store_true", help="leave the service and the manager's data dir in place")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="jupyter-deploy-demo-"))
    # Passable (not listable): as root, the process runtime runs each service as a user of its own.
    os.chmod(work, 0o711)
    password = secrets.token_urlsafe(12)
    env = dict(
        os.environ,
        JUPYTER_DEPLOY_ADMIN_PASSWORD=password,
        JUPYTER_DEPLOY_URL=url,
        JUPYTER_DEPLOY_CONFIG_DIR=str(work / "config"),
    )
    env.pop("JUPYTER_DEPLOY_TOKEN", None)
    cmd = [sys.executable, "-m", "jupyter_deploy_manager.app", "--host", "127.0.0.1", "--port", str(port),
           "--runtime", args.runtime, "--data-dir", str(work / "data")]
    print("starting:", " ".join(cmd[2:]), flush=True)
    manager = subprocess.Popen(cmd, env=env)
    os.environ.update(env)
    try:
        wait_for(url, manager)
        print(f"manager up at {url} (runtime: {requests.get(url + '/api/health').json()['runtime']})")
        started = time.monotonic()
        run_notebook(NOTEBOOKS / "01_train_and_deploy.ipynb", work)
        print(f"\n(deployed in {time.monotonic() - started:.1f} s including training)")
        run_notebook(NOTEBOOKS / "02_call_from_another_notebook.ipynb", work)
        if not args.keep:
            subprocess.run([sys.executable, "-m", "jupyter_deploy.cli", "rm", "iris", "--yes"], env=env, check=False)
        print("\nDemo finished: the model deployed from one notebook answered another.")
        return 0
    finally:
        manager.send_signal(signal.SIGTERM)
        try:
            manager.wait(30)
        except subprocess.TimeoutExpired:
            manager.kill()


if __name__ == "__main__":
    sys.exit(main())

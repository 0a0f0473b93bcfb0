"""Command line: check and load the bundle, then serve it."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from jupyter_deploy_contract import CONTROL_KEY_ENV, SECRETS_FILE_ENV

from . import EXIT_LOAD_FAILED, EXIT_OUT_OF_MEMORY, EXIT_REFUSED
from .loader import StartupError, load

PREFIX = "jupyter-deploy runner: "
"""Start of every fatal message on stderr; the manager shows that line as the deploy error."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the runner's command line."""
    parser = argparse.ArgumentParser(prog="python -m jupyter_deploy_runner", description="Serve one bundle over HTTP.")
    parser.add_argument("--bundle", required=True, help="directory holding manifest.json and payload.pkl")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks a free one (default 8080)")
    parser.add_argument(
        "--threads", type=int, default=int(os.environ.get("JUPYTER_DEPLOY_RUNNER_THREADS", "4")),
        help="worker threads calling slow entrypoints; 0 calls every entrypoint on the IO loop, where a slow "
             "call holds up every other request and the health check (default 4)",
    )
    parser.add_argument(
        "--inline-below", type=float, default=50.0, metavar="MS",
        help="calls an entrypoint usually finishes within MS milliseconds run in the fast lane (a thread the IO "
             "loop waits for, up to MS; a call still running then finishes on its own), the rest in the worker "
             "threads; 0 always uses the worker threads (default 50)",
    )
    parser.add_argument("--grace", type=float, default=30.0, help="seconds to finish requests after SIGTERM")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false", help="no line per request")
    parser.add_argument(
        "--exit-on-memory-error", action="store_true",
        help=f"end with status {EXIT_OUT_OF_MEMORY} on a MemoryError (run under an address-space limit, where it "
             "means the limit was reached) instead of answering 500",
    )
    return parser.parse_args(argv)


def apply_secrets_file(path: str | None) -> None:
    """Set the variables of the JSON object in ``path`` (the docker runtime's secrets) in this environment."""
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as fh:
            values = json.load(fh)
    except (OSError, ValueError) as exc:
        # Never the content: the message goes to the log and to the deploy's error.
        raise StartupError(f"cannot read the secrets file {path}: {type(exc).__name__}") from None
    if not isinstance(values, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise StartupError(f"the secrets file {path} must hold a JSON object of strings")
    os.environ.update(values)


def _exit_now(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Run the service; returns the exit status."""
    # Containers and process stages pipe our output to log files: line
    # buffering makes every line visible at once without a flush per write.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    args = parse_args(argv)
    # The user's own loggers (logging.getLogger(__name__) in a notebook or service.py) write to the
    # service log at INFO; tornado's access lines have their own handler and stay as they are.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Until the loop takes over SIGTERM, stopping during a slow load is a clean exit.
    signal.signal(signal.SIGTERM, _exit_now)
    # Taken out of the environment before the user's code can see it: only its hash is in there anyway.
    control_hash = os.environ.pop(CONTROL_KEY_ENV, None)
    try:
        # Before unpickling: the user's module-level code may read its secrets while it loads.
        apply_secrets_file(os.environ.pop(SECRETS_FILE_ENV, None))
        loaded = load(Path(args.bundle).resolve())
        from jupyter_deploy_contract.inputs import compile_entrypoints

        try:
            entrypoints = compile_entrypoints(loaded.manifest, loaded.functions)
        except ImportError as exc:
            raise StartupError(f"cannot prepare inputs: {exc}; is it in the service's requirements?",
                               EXIT_LOAD_FAILED) from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StartupError(f"manifest.json has a malformed entrypoint or sample: {type(exc).__name__}: {exc}",
                               EXIT_REFUSED) from exc
    except StartupError as exc:
        print(PREFIX + str(exc), file=sys.stderr, flush=True)
        return exc.status
    except MemoryError:
        print(PREFIX + "out of memory loading the payload", file=sys.stderr, flush=True)
        return EXIT_OUT_OF_MEMORY

    import tornado.netutil

    from .server import Service, serve

    try:
        sockets = tornado.netutil.bind_sockets(args.port, args.host or None)
    except OSError as exc:
        print(f"{PREFIX}cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 1

    manifest = loaded.manifest
    version = manifest.get("version")
    print(f"serving {manifest['name']} {'-' if version is None else version} "
          f"entrypoints: {', '.join(entrypoints)}", flush=True)
    service = Service(manifest, entrypoints, threads=max(0, args.threads), access_log=args.access_log,
                      inline_below=args.inline_below / 1000.0)
    service.exit_on_memory_error = args.exit_on_memory_error
    service.control_hash = control_hash
    service.sample = manifest.get("sample") if isinstance(manifest.get("sample"), dict) else None
    asyncio.run(serve(service, sockets, args.host, grace=args.grace))
    sys.stdout.flush()
    sys.stderr.flush()
    if service.inflight:
        # A worker is stuck in user code; interpreter exit would join it forever.
        os._exit(0)
    if service.executor is not None:
        service.executor.shutdown(wait=False, cancel_futures=True)
    return 0

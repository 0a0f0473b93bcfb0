"""Command line: check and load the bundle, then serve it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from . import EXIT_LOAD_FAILED, EXIT_REFUSED
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
        help="worker threads calling the entrypoints; 0 calls them on the IO loop (default 4)",
    )
    parser.add_argument(
        "--inline-below", type=float, default=50.0, metavar="MS",
        help="run calls an entrypoint usually finishes within MS milliseconds on the IO loop, "
             "the rest in the worker threads; 0 always uses the threads (default 50)",
    )
    parser.add_argument("--grace", type=float, default=30.0, help="seconds to finish requests after SIGTERM")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false", help="no line per request")
    return parser.parse_args(argv)


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
    try:
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
    asyncio.run(serve(service, sockets, args.host, grace=args.grace))
    sys.stdout.flush()
    sys.stderr.flush()
    if service.inflight:
        # A worker is stuck in user code; interpreter exit would join it forever.
        os._exit(0)
    if service.executor is not None:
        service.executor.shutdown(wait=False, cancel_futures=True)
    return 0

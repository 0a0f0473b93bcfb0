"""The smoke test: each entrypoint called once on the manifest's sample, for the manager only, before any traffic.

``POST /-/smoke/<entrypoint>`` answers 200 with what happened: not called (and why), the value, or the
exception with the frames of the user's code (the runner's own frame left out). Normal calls never get a
traceback; this route answers only a request carrying the key whose sha256 the manager put in the runner's
environment, and the manager's proxy never forwards it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import traceback
from typing import Any

import tornado.web

from jupyter_deploy_contract import CONTROL_HEADER, Unserialisable, dumps
from jupyter_deploy_contract.inputs import Entrypoint, InvalidInput

from .server import Service, _JSONHandler, _log_traceback

MAX_FRAMES = 30
"""Frames of a failing call's traceback sent back (the innermost ones)."""

# What parameter types each kind of sample fits: the sample describes the first parameter, and an
# entrypoint whose first parameter takes something else is not called (the card says so).
_FITS = {"dataframe": {"dataframe"}, "ndarray": {"ndarray", "list"}}
_JSON_FITS = {bool: {"bool"}, int: {"int", "float"}, float: {"float"}, str: {"str"},
              list: {"list", "ndarray", "series"}, dict: {"dict"}}


def _sample_value(sample: dict[str, Any]) -> Any:
    return sample.get("records") if sample.get("kind") == "dataframe" else sample.get("data")


def _why_not(ep: Entrypoint, sample: dict[str, Any] | None) -> str | None:
    """Why the entrypoint cannot be called on the sample alone, or None when it can."""
    if not ep.params:
        return None
    if sample is None:
        return "deployed without a sample"
    first, rest = ep.params[0], ep.params[1:]
    kind = sample.get("kind")
    value = _sample_value(sample)
    fits = _FITS.get(kind) if kind in _FITS else _JSON_FITS.get(type(value), set())
    if first.type != "any" and first.type not in fits:
        shown = {"dataframe": "a DataFrame", "ndarray": "an array"}.get(kind, f"a {type(value).__name__}")
        return f"its first parameter {first.name} takes {first.type} and the sample is {shown}"
    needed = [p.name for p in rest if p.required]
    if needed:
        verb = "has" if len(needed) == 1 else "have"
        return f"{', '.join(needed)} {verb} no default and the sample gives only {first.name}"
    return None


def _frames(exc: BaseException) -> list[dict[str, Any]]:
    """The frames of the call below the runner's own (the user's function and what it called)."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    return [{"file": f.filename, "line": f.lineno, "function": f.name, "code": f.line or ""}
            for f in traceback.extract_tb(tb)[-MAX_FRAMES:]]


def run(service: Service, ep: Entrypoint) -> bytes:
    """Call ``ep`` on the sample; the JSON answer saying how it went (never raises)."""
    sample = service.sample
    why = _why_not(ep, sample)
    if why is not None:
        return dumps({"entrypoint": ep.name, "called": False, "why": why})
    body = {ep.params[0].name: _sample_value(sample)} if ep.params and sample is not None else {}
    try:
        args, kwargs = ep.arguments(body)
    except InvalidInput as exc:
        return dumps({"entrypoint": ep.name, "called": True, "ok": False, "kind": "invalid-input",
                      "error": f"the sample does not fit: {exc}"})
    try:
        result = ep.fn(*args, **kwargs)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the user's code raises is the answer
        _log_traceback(f"smoke test: entrypoint {ep.name} raised {type(exc).__name__} on the sample:")
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        text = "".join(traceback.TracebackException(type(exc), exc, tb).format())
        return dumps({"entrypoint": ep.name, "called": True, "ok": False, "kind": "raised",
                      "exception": type(exc).__name__,
                      "error": "".join(traceback.format_exception_only(type(exc), exc)).strip(),
                      "frames": _frames(exc), "traceback": text})
    try:
        encoded = dumps(result)
    except Unserialisable as exc:
        sys.stderr.write(f"smoke test: entrypoint {ep.name} returned an unserialisable {exc.type_name}\n")
        return dumps({"entrypoint": ep.name, "called": True, "ok": False, "kind": "unserialisable",
                      "error": f"{ep.name} returned {exc.type_name}, which cannot be sent as JSON; return lists, "
                               "dicts, numbers, strings, numpy arrays or pandas objects"})
    head = json.dumps({"entrypoint": ep.name, "called": True, "ok": True})
    # The value is spliced in already encoded: encoding it a second time could only fail the same way.
    return head[:-1].encode() + b', "result": ' + encoded + b"}"


def key_matches(service: Service, key: str) -> bool:
    """Whether ``key`` is the control key whose sha256 the manager gave this runner."""
    expected = service.control_hash
    if not expected or not key:
        return False
    return hmac.compare_digest(hashlib.sha256(key.encode()).hexdigest(), expected)


class SmokeHandler(_JSONHandler):
    """``POST /-/smoke/<entrypoint>`` (the manager's, keyed): the entrypoint's outcome on the sample."""

    async def post(self, name: str) -> None:
        """Run the smoke test of one entrypoint in a worker thread; 404 to anyone without the key."""
        service = self.service
        ep = service.entrypoints.get(name)
        if ep is None or not key_matches(service, self.request.headers.get(CONTROL_HEADER, "")):
            self.reply(service.unknown(self.request.path))
            return
        if service.executor is None:
            answer = run(service, ep)
        else:
            answer = await asyncio.get_running_loop().run_in_executor(service.executor, run, service, ep)
        self.reply((200, answer))


def route(service: Service) -> tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]:
    """The tornado route of the smoke handler."""
    return (r"/-/smoke/([^/]+)", SmokeHandler, {"service": service})

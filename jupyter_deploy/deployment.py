"""``deploy()``: capture, upload, follow the build, and the ``Deployment`` card it returns; ``deploy_bundle()`` for a bundle built elsewhere."""

from __future__ import annotations

import html
import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .bundle import Bundle
from .client import ManagerClient
from .errors import BuildFailed, CaptureError, DeployError, SmokeTestFailed
from .progress import Progress


@dataclass
class Deployment:
    """A deployed version: where it answers, the token to call it, and how."""

    name: str
    version: str
    url: str
    token: str
    status: str
    manager_url: str
    entrypoints: list[dict[str, Any]] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    sample: dict[str, Any] | None = None
    # What the manager's smoke test did before the version took traffic: {"sample": bool, "entrypoints": [...]}.
    smoke: dict[str, Any] | None = None

    def endpoint(self, entrypoint: str | None = None) -> str:
        """Full URL of an entrypoint (the first one by default)."""
        name = entrypoint or (self.entrypoints[0]["name"] if self.entrypoints else "predict")
        return f"{self.url}/{name}"

    @property
    def docs_url(self) -> str:
        """The service's interactive API page, authorized with this token (kept in the URL fragment)."""
        return f"{self.url}/docs#token={self.token}"

    @property
    def openapi_url(self) -> str:
        """The service's OpenAPI document (needs the token)."""
        return f"{self.url}/openapi.json"

    def example_body(self, entrypoint: dict[str, Any] | None = None) -> dict[str, Any]:
        """A request body built from the sample when there is one."""
        entrypoint = entrypoint or (self.entrypoints[0] if self.entrypoints else {"parameters": []})
        body: dict[str, Any] = {}
        for i, param in enumerate(entrypoint.get("parameters", [])):
            if i == 0 and self.sample:
                kind = self.sample.get("kind")
                if kind == "dataframe":
                    body[param["name"]] = self.sample.get("records", [])[:2]
                elif kind == "ndarray":
                    body[param["name"]] = self.sample.get("data", [])[:2]
                else:
                    body[param["name"]] = self.sample.get("data")
            elif param.get("required", True):
                body[param["name"]] = _placeholder(param.get("type", "any"))
        return body

    @property
    def masked_token(self) -> str:
        """The token as output shows it: its prefix and last four characters, the rest hidden."""
        token = self.token
        return f"{token[:4]}{'•' * 8}{token[-4:]}" if len(token) > 12 else "•" * 8

    def curl(self, entrypoint: dict[str, Any] | None = None, *, reveal: bool = False) -> str:
        """A curl command calling an entrypoint; it reads the token from $TOKEN unless ``reveal`` puts it in."""
        entrypoint = entrypoint or (self.entrypoints[0] if self.entrypoints else {"name": "predict"})
        body = json.dumps(self.example_body(entrypoint))
        bearer = self.token if reveal else "$TOKEN"
        return (
            f"curl -X POST {self.endpoint(entrypoint['name'])} \\\n"
            f"  -H \"Authorization: Bearer {bearer}\" \\\n"
            f"  -H 'Content-Type: application/json' \\\n"
            f"  -d '{body}'"
        )

    def python(self, *, reveal: bool = False) -> str:
        """A Python snippet calling the service from anywhere; ``token=TOKEN`` unless ``reveal`` puts it in."""
        first = self.entrypoints[0]["name"] if self.entrypoints else "predict"
        token = json.dumps(self.token) if reveal else "TOKEN"
        return (
            "import jupyter_deploy\n"
            f'svc = jupyter_deploy.connect("{self.name}", url="{self.manager_url}", token={token})\n'
            f"svc.{first}(...)"
        )

    def connect(self) -> Any:
        """A client for this service, using this deployment's token."""
        from .remote import connect

        return connect(self.name, url=self.manager_url, token=self.token)

    def smoke_lines(self) -> list[str]:
        """What the smoke test did, one line per entrypoint (or why nothing was called)."""
        if self.smoke is None:
            return []
        if not self.smoke.get("sample"):
            return ["none: deployed without a sample, so no entrypoint was called before it took traffic"]
        lines = []
        for entry in self.smoke.get("entrypoints") or []:
            if not entry.get("called"):
                lines.append(f"{entry.get('entrypoint')}: not called ({entry.get('why')})")
            else:
                lines.append(f"{entry.get('entrypoint')}(sample) -> {entry.get('preview')}")
        return lines

    def __repr__(self) -> str:
        eps = ", ".join(e["name"] for e in self.entrypoints)
        smoke = "".join(f"\n  smoke test: {line}" for line in self.smoke_lines())
        return (
            f"Deployment({self.name} {self.version}: {self.status})\n"
            f"  endpoint: {self.endpoint()}\n  entrypoints: {eps}\n"
            f"  token: {self.masked_token} (Deployment.token holds it){smoke}\n"
            f"  docs: {self.url}/docs\n\n{self.curl()}"
        )

    def _repr_html_(self) -> str:
        """The card, with the token masked: what a saved notebook keeps."""
        return self._card(uuid.uuid4().hex)

    def _ipython_display_(self) -> None:
        """Show the card; the token reaches only the live page, never the saved output.

        The card is shown once with a script that leaves the token in a variable of the page, then at once
        replaced (same display id) by the card without it. Notebooks save a display's last content, so the
        file keeps the masked card, while the page's copy button and docs link read the variable.
        """
        from IPython.display import display

        card_id = uuid.uuid4().hex
        text = repr(self)
        card = self._card(card_id)
        feed = (f"<script>(window.jupyterDeployTokens = window.jupyterDeployTokens || {{}})"
                f"[{json.dumps(card_id)}] = {_script_string(self.token)};</script>")
        handle = display({"text/html": card + feed, "text/plain": text}, raw=True, display_id=True)
        if handle is not None:
            handle.update({"text/html": card, "text/plain": text}, raw=True)

    def _card(self, card_id: str) -> str:
        esc = html.escape
        color = {"running": "#1a7f37", "failed": "#cf222e"}.get(self.status, "#9a6700")
        rows = "".join(
            f"<tr><td><code>POST</code></td><td><code>{esc(self.endpoint(e['name']))}</code></td>"
            f"<td><code>{esc(e['name'])}{esc(_short_signature(e))}</code></td></tr>"
            for e in self.entrypoints
        )
        reqs = esc(", ".join(self.requirements[:12]) + (" ..." if len(self.requirements) > 12 else ""))
        smoke = "".join(f"<div><code>{esc(line)}</code></div>" for line in self.smoke_lines())
        smoke_block = f'<div style="margin-top:4px">Smoke test on the sample: {smoke}</div>' if smoke else ""
        # The token is looked up in the live page by the card's id; saved output holds no token at all.
        lookup = f"(window.jupyterDeployTokens || {{}})[{json.dumps(card_id)}]"
        copy = (f"var t = {lookup}; if (t && navigator.clipboard) {{ navigator.clipboard.writeText(t); "
                f"this.textContent = 'copied'; }} else {{ this.textContent = 'not in this page: use Deployment.token'; }}")
        docs = f"var t = {lookup}; if (t) {{ this.href = {json.dumps(self.url + '/docs#token=')} + encodeURIComponent(t); }}"
        return f"""
<div class="jupyter-deploy-card" data-card="{esc(card_id)}" style="border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;font-family:sans-serif;font-size:90%;max-width:60em">
  <div style="font-size:115%"><b>{esc(self.name)}</b> <span style="color:#57606a">version {esc(self.version)}</span>
    <span style="background:{color};color:white;border-radius:10px;padding:1px 8px;margin-left:6px;font-size:85%">{esc(self.status)}</span></div>
  <table style="margin:6px 0">{rows}</table>
  <div>Token (invoke {esc(self.name)} only):
    <code class="jupyter-deploy-token">{esc(self.masked_token)}</code>
    <button class="jupyter-deploy-copy" onclick="{esc(copy)}">copy</button>
    <span style="color:#57606a">(kept out of the saved notebook; in the kernel: <code>Deployment.token</code>)</span></div>
  <div style="margin-top:4px">Interactive docs: <a class="jupyter-deploy-docs" href="{esc(self.url)}/docs" target="_blank" onclick="{esc(docs)}">{esc(self.url)}/docs</a></div>
  {smoke_block}
  <details style="margin-top:6px" open><summary>curl (with <code>TOKEN</code> set to the token)</summary><pre style="background:#f6f8fa;padding:6px">{esc(self.curl())}</pre></details>
  <details><summary>Python</summary><pre style="background:#f6f8fa;padding:6px">{esc(self.python())}</pre></details>
  <div style="color:#57606a;margin-top:4px">requirements: {reqs}</div>
</div>"""


def _script_string(text: str) -> str:
    """``text`` as a JavaScript string literal that cannot end the script element it sits in."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def parse_env(pairs: list[str] | None, where: str) -> dict[str, str]:
    """``KEY=VALUE`` items as a dict (quotes around the value dropped); CaptureError naming a malformed one."""
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CaptureError(f"{where} {pair!r}: write KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def _placeholder(kind: str) -> Any:
    return {"int": 0, "float": 0.0, "str": "", "bool": False, "list": [], "dict": {}}.get(kind)


def _short_signature(entrypoint: dict[str, Any]) -> str:
    sig = entrypoint.get("signature") or "()"
    return sig if len(sig) < 80 else sig[:77] + "..."


def deploy(
    name: str,
    functions: Sequence[Callable[..., Any]] | dict[str, Callable[..., Any]] | Callable[..., Any],
    version: str | None = None,
    sample: Any = None,
    requirements: Sequence[str] | None = None,
    *,
    monitor: bool | Sequence[str] = False,
    secrets: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    url: str | None = None,
    token: str | None = None,
    progress: Progress | None = None,
) -> Deployment:
    """Capture functions and the globals they use, build them into a service, and wait until it answers.

    ``monitor`` (True, or entrypoint names) has the manager keep those entrypoints' calls. ``secrets``
    names secrets set on the manager (``jupyter-deploy secret set NAME``) and ``env`` gives plain variables:
    the service gets both as environment variables; a secret's value never leaves the manager.
    """
    from .capture import capture

    if callable(functions) and not isinstance(functions, dict):
        functions = [functions]
    progress = progress or Progress(name)
    # Made first so that a missing login fails before the (possibly slow) capture.
    client = ManagerClient(url, token)
    try:
        with reporting(progress):
            progress.phase("capture", "capturing functions and the objects they use")
            bundle = capture(
                functions, name=name, version=version, sample=sample, requirements=list(requirements or []),
                monitor=monitor, env=env, secrets=secrets,
            )
        return deploy_bundle(bundle, client=client, progress=progress)
    finally:
        client.close()


def deploy_bundle(
    bundle: Bundle,
    *,
    url: str | None = None,
    token: str | None = None,
    progress: Progress | None = None,
    client: ManagerClient | None = None,
) -> Deployment:
    """Upload an already-built bundle, follow its build, and wait until it answers."""
    manifest = bundle.manifest
    name = manifest["name"]
    progress = progress or Progress(name)
    own_client = client is None
    client = client or ManagerClient(url, token)
    try:
        with reporting(progress):
            inferred = manifest.get("inferred", {})
            direct = inferred.get("direct") or []
            progress.note(
                f"entrypoints: {', '.join(e['name'] for e in manifest['entrypoints'])}; "
                f"requirements inferred: {', '.join(direct) or 'none'} "
                f"({len(manifest['requirements'])} pinned with dependencies)"
            )
            progress.phase("upload", f"uploading {bundle.size / 1e6:.2f} MB to {client.url}")
            answer = client.upload(name, bundle)
            version = answer["version"]
            final: dict[str, Any] = {}
            for event in client.events(name, version):
                progress.event(event)
                if event.get("kind") == "result":
                    final = event
            if final.get("status") != "running":
                message = f"deploy of {name} {version} failed: {final.get('message') or 'the deploy did not finish'}"
                if final.get("failed_in") == "smoke":
                    failing = next((e for e in (final.get("smoke") or {}).get("entrypoints") or []
                                    if e.get("called") and not e.get("ok")), None)
                    raise SmokeTestFailed(message, reason="smoke-test-failed", detail=progress.lines,
                                          entrypoint=failing)
                raise BuildFailed(message, reason="deploy-failed", detail=progress.lines)
            info = client.service(name)
            return Deployment(
                name=name,
                version=version,
                url=answer["url"],
                token=answer["token"],
                status="running",
                manager_url=client.url,
                entrypoints=manifest["entrypoints"],
                requirements=manifest["requirements"],
                sample=manifest.get("sample") or info.get("sample"),
                smoke=final.get("smoke"),
            )
    finally:
        if own_client:
            client.close()


@contextmanager
def reporting(progress: Progress) -> Iterator[None]:
    """Show a DeployError raised in the block as the progress view's failure (once), then let it propagate."""
    try:
        yield
    except DeployError as exc:
        if progress.failed is None:
            progress.fail(exc.message)
        raise

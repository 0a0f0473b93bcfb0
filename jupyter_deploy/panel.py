"""``jupyter_deploy.panel()``: an ipywidgets panel to deploy from the notebook and manage what is deployed.

It calls the client SDK (``deploy``, ``ManagerClient``) and never speaks HTTP itself.
"""

from __future__ import annotations

import html
import re
import threading
import time
import types
from typing import Any, Callable, Mapping

import ipywidgets as w

from .client import ManagerClient
from .deployment import Deployment, deploy
from .errors import CaptureError, DeployError
from .progress import PHASE_TITLES, PHASES, Progress
from .requirements import infer_requirements, runner_modules
from .signatures import describe, type_of
from .tracing import dump_payload

NONE = "(none)"
MODEL_METHODS = ("predict", "predict_proba", "transform")
SAMPLE_KINDS = ("dataframe", "series", "ndarray")
LOG_LINES = 200

# Served when a model is picked without a function: the module name makes cloudpickle ship it by value.
_MODEL_PREDICT = '''
def predict(data):
    """Predictions of the model for the rows of ``data``."""
    out = _model.predict(data)
    return out.tolist() if hasattr(out, "tolist") else out
'''


def panel(namespace: Mapping[str, Any] | None = None, *, url: str | None = None, token: str | None = None) -> "DeployPanel":
    """Show the deployment panel for the notebook's variables (``namespace``, default: the notebook's)."""
    if namespace is None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            raise DeployError("jupyter_deploy.panel() needs a notebook: pass namespace= to use it elsewhere")
        namespace = shell.user_ns
    return DeployPanel(namespace, url=url, token=token)


def model_like(value: Any) -> bool:
    """A fitted-model-like object (not data, a class or a module) with a predict/transform method: something to serve."""
    if isinstance(value, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return False
    if sample_like(value):
        return False
    return any(callable(getattr(value, m, None)) for m in MODEL_METHODS)


def user_function(name: str, value: Any) -> bool:
    """A public function defined in the notebook."""
    return (
        isinstance(value, types.FunctionType)
        and not name.startswith("_")
        and value.__module__ == "__main__"
        and value.__name__ != "<lambda>"
    )


def sample_kind(value: Any) -> str | None:
    """``dataframe``, ``series`` or ``ndarray`` (the kinds of sample a service describes itself from), else None."""
    kind = type_of(type(value))
    return kind if kind in SAMPLE_KINDS else None


def sample_like(value: Any) -> bool:
    """A DataFrame, Series or ndarray."""
    return sample_kind(value) is not None


def model_entrypoint(model: Any, sample: Any = None) -> Callable[..., Any]:
    """A ``predict(data)`` function serving ``model`` (annotated like the sample so the runner converts input)."""
    namespace: dict[str, Any] = {"__name__": "__main__", "_model": model}
    exec(compile(_MODEL_PREDICT, "<jupyter-deploy panel>", "exec"), namespace)  # noqa: S102 - our own constant source
    fn = namespace["predict"]
    if sample is not None and sample_like(sample):
        fn.__annotations__ = {"data": type(sample)}
    elif getattr(model, "feature_names_in_", None) is not None:
        import pandas as pd

        fn.__annotations__ = {"data": pd.DataFrame}
    return fn


def uses(fn: Any, value: Any, namespace: Mapping[str, Any]) -> bool:
    """Whether ``fn`` refers to ``value`` by a global name or a closure cell."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= set(const.co_names)
    if any(namespace.get(n) is value for n in names):
        return True
    return any(getattr(cell, "cell_contents", None) is value for cell in (fn.__closure__ or ()))


class WidgetProgress(Progress):
    """Progress shown in the panel: a bar by phase, the notes, and the build log as it streams."""

    def __init__(self, name: str, view: "DeployPanel"):
        super().__init__(name, rich=True)
        self.view = view

    def _render(self, force: bool = False) -> None:
        view = self.view
        if self.failed:
            view.progress.bar_style = "danger"
        elif self.phase_name == "":
            view.progress.bar_style = "success"
        view.progress.value = len(self.done) + (0 if self.phase_name == "" or self.failed else 0.5)
        if self.failed:
            state, current, note = "failed", f"failed in {PHASE_TITLES.get(self.phase_name, self.phase_name)}", ""
        elif self.phase_name == "":
            state, current, note = "done", "ready", f"in {time.monotonic() - self.started:.1f} s"
        else:
            state, current, note = self.phase_name, PHASE_TITLES.get(self.phase_name, self.phase_name), self.notes[-1] if self.notes else ""
        view.phase.value = (
            f'<span class="jd-phase" data-phase="{html.escape(state)}"><b>{html.escape(current)}</b></span> '
            f"{html.escape(note)}"
        )
        view.show_log(self.lines)


class DeployPanel:
    """The widgets and what they do; ``.widget`` is the box shown in the notebook."""

    def __init__(self, namespace: Mapping[str, Any], *, url: str | None = None, token: str | None = None):
        self.namespace = namespace
        self.url, self.token = url, token
        self.deployment: Deployment | None = None
        self.error: DeployError | None = None
        self._thread: threading.Thread | None = None
        self._confirming: tuple[str, str] | None = None

        label = {"description_width": "7em"}
        wide = w.Layout(width="28em")
        self.model = w.Dropdown(description="Model", options=[NONE], layout=wide, style=label)
        self.functions = w.SelectMultiple(
            description="Functions", options=[], rows=4, layout=wide, style=label,
            tooltip="each selected function becomes an entrypoint",
        )
        self.sample = w.Dropdown(description="Sample", options=[NONE], layout=wide, style=label)
        self.name = w.Text(description="Name", placeholder="service name, e.g. iris", layout=wide, style=label)
        self.version = w.Text(description="Version", placeholder="next patch version", layout=wide, style=label)
        self.requirements = w.Textarea(
            description="Requirements", placeholder="inferred when you pick a model or functions",
            rows=4, layout=w.Layout(width="40em"), style=label,
        )
        self.inferred = w.HTML()
        self.rescan = w.Button(description="Rescan notebook", icon="refresh", tooltip="look for new variables and functions")
        self.deploy_button = w.Button(description="Deploy", button_style="primary", icon="rocket")
        self.progress = w.FloatProgress(value=0, min=0, max=len(PHASES), description="Progress")
        self.phase = w.HTML()
        self.log = w.HTML()
        self.result = w.HTML()
        self.list_box = w.VBox()
        self.list_status = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="reload the list of deployments")

        for control, css in (
            (self.model, "jd-model"), (self.functions, "jd-functions"), (self.sample, "jd-sample"),
            (self.name, "jd-name"), (self.version, "jd-version"), (self.requirements, "jd-requirements"),
            (self.deploy_button, "jd-deploy"), (self.rescan, "jd-rescan"), (self.result, "jd-result"),
            (self.log, "jd-log"), (self.refresh_button, "jd-refresh"), (self.list_box, "jd-deployments"),
            (self.progress, "jd-progress"),
        ):
            control.add_class(css)

        self.model.observe(self._selection_changed, names="value")
        self.functions.observe(self._selection_changed, names="value")
        self.sample.observe(self._selection_changed, names="value")
        self.rescan.on_click(lambda _: self.scan())
        self.deploy_button.on_click(lambda _: self.start_deploy())
        self.refresh_button.on_click(lambda _: self.refresh())

        form = w.VBox(
            [
                w.HTML("<b>Deploy from this notebook</b>"),
                w.HBox([self.model, self.rescan]),
                self.functions,
                w.HTML('<span style="color:var(--jp-ui-font-color2, #57606a)">Each selected function becomes an '
                       "entrypoint; with none selected, the model's <code>predict</code> is served.</span>"),
                self.sample, self.name, self.version, self.requirements, self.inferred,
                w.HBox([self.deploy_button]),
                self.progress, self.phase, self.log, self.result,
            ]
        )
        deployments = w.VBox([w.HBox([w.HTML("<b>Deployments</b>"), self.refresh_button]), self.list_status, self.list_box])
        self.widget = w.VBox([form, w.HTML("<hr>"), deployments])
        self.widget.add_class("jupyter-deploy-panel")
        self.progress.layout.visibility = "hidden"
        self.scan()
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # the form
    def scan(self) -> None:
        """Fill the pickers from the notebook's current variables."""
        ns = dict(self.namespace)
        models = [k for k, v in ns.items() if not k.startswith("_") and model_like(v)]
        functions = [k for k, v in ns.items() if user_function(k, v)]
        samples = [k for k, v in ns.items() if not k.startswith("_") and sample_like(v)]
        keep_model, keep_fns, keep_sample = self.model.value, self.functions.value, self.sample.value
        self.model.options = [NONE, *models]
        self.functions.options = functions
        self.sample.options = [NONE, *samples]
        self.model.value = keep_model if keep_model in models else (models[0] if len(models) == 1 else NONE)
        self.functions.value = tuple(f for f in keep_fns if f in functions)
        self.sample.value = keep_sample if keep_sample in samples else NONE
        self._selection_changed()

    def entrypoints(self) -> dict[str, Callable[..., Any]]:
        """The functions to deploy, as picked; a clear CaptureError when the picks do not make a service."""
        ns = self.namespace
        model = None if self.model.value == NONE else ns.get(self.model.value)
        chosen = {name: ns[name] for name in self.functions.value if name in ns}
        if chosen:
            if model is not None and not any(uses(fn, model, ns) for fn in chosen.values()):
                raise CaptureError(
                    f"none of {', '.join(chosen)} uses {self.model.value}: pick a function that calls it, "
                    f"or no function to serve {self.model.value}.predict"
                )
            return chosen
        if model is not None:
            if not callable(getattr(model, "predict", None)):
                raise CaptureError(f"{self.model.value} has no predict method: pick a function that uses it")
            return {"predict": model_entrypoint(model, self.sample_value())}
        raise CaptureError("pick a model or at least one function to deploy")

    def sample_value(self) -> Any:
        """The picked sample, or None."""
        return None if self.sample.value == NONE else self.namespace.get(self.sample.value)

    def _selection_changed(self, change: Any = None) -> None:
        if not self.name.value and self.model.value != NONE:
            self.name.value = _service_name(self.model.value)
        try:
            named = self.entrypoints()
        except CaptureError as exc:
            self.inferred.value = f'<span class="jd-hint">{html.escape(exc.message)}</span>'
            return
        try:
            _, modules, _ = dump_payload(named)
            kind = sample_kind(self.sample_value())
            modules |= runner_modules([describe(n, fn) for n, fn in named.items()], {"kind": kind} if kind else None)
            _, inferred = infer_requirements(modules, [])
        except DeployError as exc:
            self.inferred.value = f'<span class="jd-error" style="color:#cf222e">{html.escape(exc.message)}</span>'
            return
        self.requirements.value = "\n".join(inferred["direct"])
        modules_text = ", ".join(f"{m} → {d}" for m, d in inferred["modules"].items()) or "none"
        self.inferred.value = (
            f'<span class="jd-hint">Inferred from what {html.escape(", ".join(named))} uses ({html.escape(modules_text)}); '
            "edit to add or pin packages. Their dependencies are pinned to this kernel's versions.</span>"
        )

    # deploying
    def start_deploy(self) -> None:
        """Deploy the picks in a background thread (the kernel stays free; progress streams into the panel)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.result.value = ""
        self.log.value = ""
        self.deployment, self.error = None, None
        try:
            named = self.entrypoints()
            name = self.name.value.strip()
            if not name:
                raise CaptureError("give the service a name (lowercase letters, digits and dashes)")
        except DeployError as exc:
            self.error = exc
            self._show_error(exc)
            return
        requirements = [line.strip() for line in self.requirements.value.splitlines() if line.strip()]
        self.deploy_button.disabled = True
        self.progress.layout.visibility = "visible"
        self.progress.bar_style = ""
        self.progress.value = 0
        progress = WidgetProgress(name, self)
        sample = self.sample_value()
        version = self.version.value.strip() or None

        def work() -> None:
            try:
                self.deployment = deploy(
                    name, named, version=version, sample=sample, requirements=requirements,
                    url=self.url, token=self.token, progress=progress,
                )
                self.result.value = self.deployment._repr_html_()
                self.version.value = ""
                self.refresh()
            except DeployError as exc:
                self.error = exc
                if progress.failed is None:
                    progress.fail(exc.message)
                self._show_error(exc, progress.lines)
            except Exception as exc:  # noqa: BLE001 - shown in the panel instead of lost in a thread
                self.error = DeployError(f"{type(exc).__name__}: {exc}")
                progress.fail(self.error.message)
                self._show_error(self.error, progress.lines)
            finally:
                self.deploy_button.disabled = False

        self._thread = threading.Thread(target=work, name=f"jupyter-deploy {name}", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> Deployment | None:
        """Wait for the deploy under way; the Deployment, or None when it failed (see ``.error``)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.deployment

    def show_log(self, lines: list[str]) -> None:
        """Show the last build log lines."""
        if not lines:
            return
        text = html.escape("\n".join(lines[-LOG_LINES:]))
        self.log.value = (
            '<pre class="jd-log-text" style="max-height:14em;overflow:auto;background:var(--jp-layout-color2,#f6f8fa);'
            f'padding:4px;margin:4px 0;font-size:85%">{text}</pre>'
        )

    def _show_error(self, exc: DeployError, lines: list[str] | None = None) -> None:
        if lines:
            self.show_log(lines)
        self.result.value = (
            f'<div class="jd-error" style="color:#cf222e;font-weight:bold">{html.escape(exc.message)}</div>'
        )

    # the list of deployments
    def refresh(self) -> None:
        """Reload the deployments from the manager."""
        try:
            # Short: the list must not hold the notebook up when the manager is far or down.
            client = ManagerClient(self.url, self.token, timeout=10)
        except DeployError as exc:
            self.list_box.children = ()
            self.list_status.value = f'<span class="jd-list-state" data-state="login">{html.escape(exc.message)}</span>'
            return
        try:
            services = client.services()
        except DeployError as exc:
            self.list_box.children = ()
            self._list_error(exc)
            return
        finally:
            client.close()
        if not services:
            self.list_status.value = '<span class="jd-list-state" data-state="empty">No deployments yet.</span>'
        else:
            self.list_status.value = ""
        self.list_box.children = tuple(self._row(s) for s in services)

    def _list_error(self, exc: DeployError) -> None:
        self.list_status.value = (
            f'<span class="jd-list-state" data-state="error" style="color:#cf222e">{html.escape(exc.message)}</span>'
        )

    def _row(self, service: dict[str, Any]) -> w.Widget:
        name, status = service["name"], service.get("status", "")
        color = {"running": "#1a7f37", "failed": "#cf222e", "crashed": "#cf222e"}.get(status, "#9a6700")
        label = w.HTML(
            f'<span class="jd-row-label" data-service="{html.escape(name)}"><b>{html.escape(name)}</b> '
            f'{html.escape(str(service.get("main_version") or ""))} '
            f'<span class="jd-badge" data-status="{html.escape(status)}" style="background:{color};color:white;'
            f'border-radius:10px;padding:0 7px;font-size:85%">{html.escape(status)}</span></span>',
            layout=w.Layout(width="22em"),
        )
        if self._confirming and self._confirming[0] == name:
            action = self._confirming[1]
            confirm = w.Button(description=f"Yes, {action} {name}", button_style="danger")
            cancel = w.Button(description="Cancel")
            confirm.add_class("jd-confirm")
            cancel.add_class("jd-cancel")
            confirm.on_click(lambda _: self._act(name, action))
            cancel.on_click(lambda _: self._ask(None))
            question = w.HTML(f"{'Stop every version of' if action == 'stop' else 'Delete'} {html.escape(name)}?")
            box = w.HBox([label, question, confirm, cancel])
        else:
            stop = w.Button(description="Stop", tooltip=f"stop {name}", disabled=status != "running")
            delete = w.Button(description="Delete", tooltip=f"delete {name} and its versions", button_style="warning")
            stop.add_class("jd-stop")
            delete.add_class("jd-delete")
            stop.on_click(lambda _: self._ask((name, "stop")))
            delete.on_click(lambda _: self._ask((name, "delete")))
            box = w.HBox([label, stop, delete])
        box.add_class("jd-row")
        return box

    def _ask(self, what: tuple[str, str] | None) -> None:
        self._confirming = what
        self.refresh()

    def _act(self, name: str, action: str) -> None:
        self._confirming = None
        try:
            client = ManagerClient(self.url, self.token)
            try:
                if action == "delete":
                    client.delete(name)
                else:
                    client.act(name, action)
            finally:
                client.close()
        except DeployError as exc:
            self.refresh()
            self._list_error(exc)
            return
        self.refresh()


def _service_name(variable: str) -> str:
    """A valid service name made from a variable name."""
    name = re.sub(r"[^a-z0-9]+", "-", variable.lower()).strip("-")
    return name[:48].strip("-") or "model"

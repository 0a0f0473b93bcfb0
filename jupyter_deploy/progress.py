"""Progress of a deploy as it happens: an updating HTML display in a notebook, lines on stderr elsewhere."""

from __future__ import annotations

import html
import sys
import time
from typing import Any

PHASES = ("capture", "upload", "build", "start", "health", "smoke")
PHASE_TITLES = {"capture": "capture", "upload": "upload", "build": "build", "start": "start", "health": "health check",
                "smoke": "smoke test"}
LOG_LINES = 15


def in_notebook() -> bool:
    """Whether we run inside an IPython kernel that can show rich output."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class Progress:
    """Receives phases and log lines; renders them for the user."""

    def __init__(self, name: str, rich: bool | None = None, stream: Any = None):
        self.name = name
        self.rich = in_notebook() if rich is None else rich
        self.stream = stream or sys.stderr
        self.phase_name = "capture"
        self.done: list[str] = []
        self.lines: list[str] = []
        self.notes: list[str] = []
        self.failed: str | None = None
        self.started = time.monotonic()
        self._last_render = 0.0
        self._handle: Any = None

    # updates
    def phase(self, phase: str, message: str | None = None) -> None:
        """Enter a phase (finishing the ones before it)."""
        if phase in PHASES:
            index = PHASES.index(phase)
            self.done = list(PHASES[:index])
            self.phase_name = phase
        if message:
            self.note(message, force=True)
        else:
            self._render(force=True)

    def note(self, message: str, force: bool = False) -> None:
        """A line worth keeping visible (what was inferred, what was received)."""
        self.notes.append(message)
        if not self.rich:
            self.stream.write(f"[{self.name}] {message}\n")
            self.stream.flush()
        self._render(force=force)

    def log(self, line: str) -> None:
        """A build or start log line."""
        self.lines.append(line)
        if not self.rich:
            self.stream.write(f"  | {line}\n")
            self.stream.flush()
        self._render()

    def event(self, event: dict[str, Any]) -> None:
        """Render one event of the manager's deploy stream."""
        phase, kind, message = event.get("phase"), event.get("kind"), event.get("message", "")
        if kind == "log":
            self.log(message)
        elif kind == "phase":
            if phase in PHASES and phase != self.phase_name:
                self.phase(phase, message)
            else:
                self.note(message, force=True)
        elif kind == "result":
            if event.get("status") == "running":
                self.finish()
            else:
                self.fail(message)

    def finish(self) -> None:
        """All phases done."""
        self.done = list(PHASES)
        self.phase_name = ""
        self._render(force=True)
        if not self.rich:
            self.stream.write(f"[{self.name}] ready in {time.monotonic() - self.started:.1f} s\n")

    def fail(self, message: str) -> None:
        """The deploy failed."""
        self.failed = message
        if not self.rich:
            self.stream.write(f"[{self.name}] FAILED: {message}\n")
        self._render(force=True)

    # rendering
    def _render(self, force: bool = False) -> None:
        if not self.rich:
            return
        now = time.monotonic()
        # Log lines can come by the hundred: redraw at most a few times a second.
        if not force and now - self._last_render < 0.25:
            return
        self._last_render = now
        from IPython.display import HTML, display

        view = HTML(self.html())
        if self._handle is None:
            self._handle = display(view, display_id=True)
        else:
            self._handle.update(view)

    def html(self) -> str:
        """The progress view as HTML."""
        steps = []
        for phase in PHASES:
            if phase in self.done:
                mark, color = "&#10003;", "#1a7f37"
            elif phase == self.phase_name and self.failed:
                mark, color = "&#10007;", "#cf222e"
            elif phase == self.phase_name:
                mark, color = "&#9679;", "#0969da"
            else:
                mark, color = "&#9675;", "#8c959f"
            steps.append(f'<span style="color:{color};margin-right:1em">{mark} {PHASE_TITLES[phase]}</span>')
        elapsed = time.monotonic() - self.started
        notes = "".join(f"<div>{html.escape(n)}</div>" for n in self.notes[-6:])
        logs = html.escape("\n".join(self.lines[-LOG_LINES:]))
        error = (
            f'<div style="color:#cf222e;font-weight:bold;margin-top:4px">{html.escape(self.failed)}</div>'
            if self.failed
            else ""
        )
        log_block = (
            f'<pre style="max-height:16em;overflow:auto;background:#f6f8fa;padding:4px;margin:4px 0;font-size:85%">{logs}</pre>'
            if logs
            else ""
        )
        return (
            f'<div class="jupyter-deploy-progress" style="font-family:sans-serif;font-size:90%">'
            f"<b>Deploying {html.escape(self.name)}</b> &middot; {elapsed:.1f} s<div>{''.join(steps)}</div>"
            f'<div style="color:#57606a">{notes}</div>{log_block}{error}</div>'
        )

"""Infer pinned requirements from the modules a capture reached and those the runner needs.

Top-level modules are mapped to installed distributions, pinned to the
versions installed in the kernel, and expanded to their full dependency
closure, so the manager can build a wheelhouse without resolving anything.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import os
import sys
from collections import deque
from typing import Any, Iterable, Mapping

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from .errors import CaptureError

# Modules that never name a distribution of their own.
_NOT_DISTRIBUTIONS = frozenset({"__main__", "__mp_main__", "builtins", "__builtin__"})

# The kernel's own machinery: a captured function may reach IPython objects
# (display, get_ipython) without the service needing a kernel. These are only
# skipped as traced roots; an explicit request or a real dependency keeps them.
SKIPPED_DISTRIBUTIONS = frozenset(
    {"ipython", "ipykernel", "jupyter-client", "jupyter-core", "jupyter-deploy", "comm", "traitlets"}
)

# The service runner is self-contained, so this package is never a requirement.
_SELF = "jupyter-deploy"


@functools.lru_cache(maxsize=1)
def packages_distributions() -> Mapping[str, list[str]]:
    """Top-level module -> distribution names, computed once per process (it is slow)."""
    return metadata.packages_distributions()


def top_level(module: str) -> str:
    """The top-level package of a dotted module name."""
    return module.partition(".")[0]


def is_stdlib(top: str) -> bool:
    """Whether a top-level module belongs to the standard library."""
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def infer_requirements(modules: set[str], explicit: list[str] | None) -> tuple[list[str], dict[str, Any]]:
    """Pin the distributions behind ``modules`` plus their closure; apply ``explicit`` overrides."""
    by_module = _map_modules(modules)
    direct: dict[str, metadata.Distribution] = {}
    module_map: dict[str, str] = {}
    for top, dists in sorted(by_module.items()):
        kept = [d for d in dists if canonicalize_name(_name(d)) not in SKIPPED_DISTRIBUTIONS]
        for dist in kept:
            direct[canonicalize_name(_name(dist))] = dist
        if kept:
            module_map[top] = ", ".join(sorted({_name(d) for d in kept}))

    direct_pins = [_pin(direct[key]) for key in sorted(direct)]
    pins: dict[str, str] = {key: _pin(dist) for key, dist in _closure(direct.values()).items()}
    pins.pop(_SELF, None)
    # The runner refuses a payload whose cloudpickle differs from the kernel's.
    cloudpickle_dist = metadata.distribution("cloudpickle")
    pins["cloudpickle"] = _pin(cloudpickle_dist)

    explicit_resolved: list[str] = []
    for text in explicit or []:
        key, resolved, dist = _resolve_explicit(text)
        if key == "cloudpickle":
            _check_cloudpickle(text, resolved, cloudpickle_dist)
            resolved = pins["cloudpickle"]
        explicit_resolved.append(resolved)
        pins[key] = resolved
        # An explicit package pinned from the kernel brings its installed
        # dependencies too, so the wheelhouse is complete without an index.
        if dist is not None:
            for dep_key, dep in _closure([dist]).items():
                if dep_key != _SELF:
                    pins.setdefault(dep_key, _pin(dep))

    requirements = [pins[key] for key in sorted(pins)]
    inferred = {
        "direct": direct_pins,
        "modules": module_map,
        "explicit": explicit_resolved,
    }
    return requirements, inferred


def runner_modules(entrypoints: list[dict[str, Any]], sample_info: dict[str, Any] | None) -> set[str]:
    """Modules the runner needs to build the inputs, even when only string annotations mention them."""
    kinds = {p.get("type") for e in entrypoints for p in e.get("parameters", [])}
    if sample_info:
        kinds.add(sample_info.get("kind"))
    needed = set()
    if kinds & {"dataframe", "series"}:
        needed.add("pandas")
    if kinds & {"dataframe", "series", "ndarray"}:
        needed.add("numpy")
    return needed


def _name(dist: metadata.Distribution) -> str:
    return dist.metadata["Name"]


def _pin(dist: metadata.Distribution) -> str:
    return f"{_name(dist)}=={dist.version}"


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _map_modules(modules: Iterable[str]) -> dict[str, list[metadata.Distribution]]:
    """Top-level module -> the installed distributions providing it."""
    names_by_top: dict[str, set[str]] = {}
    for module in modules:
        if not isinstance(module, str) or not module:
            continue
        top = top_level(module)
        if top in _NOT_DISTRIBUTIONS or is_stdlib(top):
            continue
        names_by_top.setdefault(top, set()).add(module)

    mapping = packages_distributions()
    found: dict[str, list[metadata.Distribution]] = {}
    for top, full_names in names_by_top.items():
        candidates = sorted(set(mapping.get(top, ())))
        dists = [d for d in (_installed(n) for n in candidates) if d is not None]
        if len(dists) > 1:
            # A namespace package (google, azure...) is shared by several
            # distributions; keep those that own a module we actually met.
            owners = _owners(full_names, dists)
            dists = owners or dists
        if dists:
            found[top] = dists
    return found


def _owners(full_names: set[str], dists: list[metadata.Distribution]) -> list[metadata.Distribution]:
    files = set()
    for name in full_names:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            files.add(os.path.realpath(path))
    owners = []
    for dist in dists:
        located = {os.path.realpath(str(dist.locate_file(f))) for f in dist.files or ()}
        if files & located:
            owners.append(dist)
    return owners


def _closure(roots: Iterable[metadata.Distribution]) -> dict[str, metadata.Distribution]:
    """Every installed distribution reachable from ``roots`` through their requirements."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, str]] = set()
    queue: deque[tuple[metadata.Distribution, frozenset[str]]] = deque((d, frozenset()) for d in roots)
    while queue:
        dist, extras = queue.popleft()
        key = canonicalize_name(_name(dist))
        found[key] = dist
        wanted = {""} | set(extras)
        if all((key, extra) in seen for extra in wanted):
            continue
        seen.update((key, extra) for extra in wanted)
        for text in dist.requires or ():
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not _marker_applies(req.marker, wanted):
                continue
            dep = _installed(req.name)
            # Not installed means optional here (e.g. another platform's extra).
            if dep is not None:
                queue.append((dep, frozenset(canonicalize_name(e) for e in req.extras)))
    return found


def _marker_applies(marker: Marker, extras: set[str]) -> bool:
    return any(marker.evaluate({"extra": extra}) for extra in extras)


def _resolve_explicit(text: str) -> tuple[str, str, metadata.Distribution | None]:
    """Canonical name, the requirement string to use, and the installed dist it was pinned from."""
    if not isinstance(text, str) or not text.strip():
        raise CaptureError(f"requirement {text!r} is not a PEP 508 string")
    try:
        req = Requirement(text.strip())
    except InvalidRequirement as exc:
        raise CaptureError(f"requirement {text!r} is not a valid PEP 508 requirement: {exc}") from exc
    key = canonicalize_name(req.name)
    if req.specifier or req.url:
        return key, text.strip(), None
    dist = _installed(req.name)
    if dist is None:
        return key, text.strip(), None
    req.name = _name(dist)
    req.specifier = SpecifierSet(f"=={dist.version}")
    return key, str(req), dist


def _check_cloudpickle(text: str, resolved: str, installed: metadata.Distribution) -> None:
    spec = Requirement(resolved).specifier
    if not spec.contains(installed.version, prereleases=True):
        raise CaptureError(
            f"requirement {text!r} conflicts with the kernel's cloudpickle {installed.version}: "
            "the service must unpickle with the same cloudpickle version"
        )

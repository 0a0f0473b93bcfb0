"""The bundle: a manifest plus a cloudpickle payload, packed as one tar.

This module never unpickles anything, so the manager can use it on untrusted
uploads. See docs/internals.md for the manifest fields.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from .errors import BundleError

FORMAT = 1
MANIFEST = "manifest.json"
PAYLOAD = "payload.pkl"
MEMBERS = (MANIFEST, PAYLOAD)

SERVICE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
"""Service names become container and URL parts: lowercase letters, digits, dashes."""
VERSION_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,30}[A-Za-z0-9])?$")
"""Versions: letters, digits, '.', '_' and '-'."""

Source = Union[bytes, str, os.PathLike]


@dataclass
class Bundle:
    """A packed bundle: its bytes, manifest and sha256."""

    data: bytes
    manifest: dict[str, Any]

    @property
    def sha256(self) -> str:
        """Hex sha256 of the whole bundle, sent with the upload."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        """Size of the bundle in bytes."""
        return len(self.data)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def pack(manifest: dict[str, Any], payload: bytes) -> Bundle:
    """Pack a manifest and payload into a bundle, filling in the payload checksum."""
    manifest = dict(manifest)
    manifest["format"] = FORMAT
    manifest["payload"] = {"file": PAYLOAD, "sha256": sha256_hex(payload), "size": len(payload)}
    # Key order is kept: sample records list their columns in training order.
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((MANIFEST, manifest_bytes), (PAYLOAD, payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            # Fixed mtime keeps identical captures byte-identical.
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return Bundle(data=buf.getvalue(), manifest=manifest)


def _open(source: Source) -> tarfile.TarFile:
    try:
        if isinstance(source, (bytes, bytearray)):
            return tarfile.open(fileobj=io.BytesIO(source), mode="r:")
        return tarfile.open(os.fspath(source), mode="r:")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"not a bundle (expected an uncompressed tar): {exc}") from exc


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    found: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        name = member.name
        if name not in MEMBERS:
            raise BundleError(f"unexpected member {name!r} in bundle (only {', '.join(MEMBERS)} allowed)")
        if not member.isfile():
            raise BundleError(f"bundle member {name!r} is not a regular file")
        if name in found:
            raise BundleError(f"bundle member {name!r} appears twice")
        found[name] = member
    missing = [m for m in MEMBERS if m not in found]
    if missing:
        raise BundleError(f"bundle lacks {', '.join(missing)}")
    return found


def _parse_manifest(raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError("manifest.json must hold a JSON object")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"unsupported bundle format {manifest.get('format')!r} (this side reads {FORMAT})")
    for key in ("name", "python", "cloudpickle", "entrypoints", "requirements", "payload"):
        if key not in manifest:
            raise BundleError(f"manifest.json lacks {key!r}")
    _check_structure(manifest)
    return manifest


def _check_structure(manifest: dict[str, Any]) -> None:
    """The fields the manager reads must have the right shapes, or every listing would fail later."""
    for key in ("python", "cloudpickle"):
        if not isinstance(manifest[key], str):
            raise BundleError(f"manifest.json: {key!r} must be a string")
    entrypoints = manifest["entrypoints"]
    if not isinstance(entrypoints, list) or not entrypoints:
        raise BundleError("manifest.json: 'entrypoints' must be a non-empty list")
    for i, entry in enumerate(entrypoints):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].isidentifier():
            raise BundleError(f"manifest.json: entrypoint #{i} must be an object with an identifier 'name'")
        params = entry.get("parameters", [])
        if not isinstance(params, list) or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str) for p in params
        ):
            raise BundleError(f"manifest.json: parameters of {entry['name']!r} must be objects with a 'name'")
    requirements = manifest["requirements"]
    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
        raise BundleError("manifest.json: 'requirements' must be a list of strings")
    for key in ("sample", "features"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise BundleError(f"manifest.json: {key!r} must be an object or null")
    if not isinstance(manifest["payload"], dict):
        raise BundleError("manifest.json: 'payload' must be an object")


def read_manifest(source: Source) -> dict[str, Any]:
    """Return the manifest of a bundle without touching its payload."""
    with _open(source) as tar:
        members = _members(tar)
        fh = tar.extractfile(members[MANIFEST])
        assert fh is not None
        return _parse_manifest(fh.read())


def verify(source: Source) -> dict[str, Any]:
    """Check the bundle's structure and payload checksum; return its manifest."""
    with _open(source) as tar:
        members = _members(tar)
        manifest = _parse_manifest(tar.extractfile(members[MANIFEST]).read())  # type: ignore[union-attr]
        payload = tar.extractfile(members[PAYLOAD]).read()  # type: ignore[union-attr]
    _check_payload(manifest, payload)
    return manifest


def _check_payload(manifest: dict[str, Any], payload: bytes) -> None:
    expected = (manifest.get("payload") or {}).get("sha256")
    actual = sha256_hex(payload)
    if expected != actual:
        raise BundleError(f"payload checksum mismatch: manifest says {expected}, payload is {actual}")


def extract(source: Source, dest: str | os.PathLike) -> dict[str, Any]:
    """Unpack a bundle's two files into ``dest`` after checking it; return the manifest."""
    dest = Path(dest)
    with _open(source) as tar:
        members = _members(tar)
        manifest_raw = tar.extractfile(members[MANIFEST]).read()  # type: ignore[union-attr]
        payload = tar.extractfile(members[PAYLOAD]).read()  # type: ignore[union-attr]
    manifest = _parse_manifest(manifest_raw)
    _check_payload(manifest, payload)
    dest.mkdir(parents=True, exist_ok=True)
    # Written by name, never by the member's path, so nothing escapes dest.
    (dest / MANIFEST).write_bytes(manifest_raw)
    (dest / PAYLOAD).write_bytes(payload)
    return manifest

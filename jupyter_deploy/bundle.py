"""The notebook side's handle on a bundle: packed bytes, manifest and checksum.

The format itself (members, manifest fields, checks) is the contract's
(``jupyter_deploy_contract``); this module turns its errors into ``BundleError``.
Nothing here unpickles anything. See docs/internals.md for the manifest fields.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import jupyter_deploy_contract as contract

from .errors import BundleError


@dataclass
class Bundle:
    """A packed bundle: its bytes, manifest and sha256."""

    data: bytes
    manifest: dict[str, Any]

    @property
    def sha256(self) -> str:
        """Hex sha256 of the whole bundle, sent with the upload."""
        return contract.sha256_hex(self.data)

    @property
    def size(self) -> int:
        """Size of the bundle in bytes."""
        return len(self.data)


def pack(manifest: dict[str, Any], payload: bytes) -> Bundle:
    """Pack a manifest and payload into a bundle, filling in format and payload checksum."""
    data, packed = contract.pack(manifest, payload)
    return Bundle(data=data, manifest=packed)


def read_manifest(source: contract.Source) -> dict[str, Any]:
    """The checked manifest of a bundle, without touching its payload."""
    try:
        return contract.read_manifest(source)
    except contract.ContractError as exc:
        raise BundleError(str(exc)) from exc


def extract(source: contract.Source, dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Unpack a bundle's two files into ``dest`` after checking it; return the manifest."""
    try:
        return contract.extract(source, dest)
    except contract.ContractError as exc:
        raise BundleError(str(exc)) from exc

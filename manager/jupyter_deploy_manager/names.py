"""The manager's check of service names and versions from requests (they become container names and URL parts)."""

from __future__ import annotations

import jupyter_deploy_contract as contract

from .errors import ApiError


def check_name(name: str) -> None:
    """422 unless ``name`` is a valid service name: lowercase letters, digits, dashes."""
    if not contract.is_service_name(name):
        raise ApiError(422, f"invalid service name {name!r}: use {contract.SERVICE_NAME_RULE}", "invalid-name")


def check_version(version: str) -> None:
    """422 unless ``version`` is a valid version."""
    if not contract.is_version(version):
        raise ApiError(
            422, f"invalid version {version!r}: letters, digits, '.', '_' and '-' only", "invalid-version"
        )

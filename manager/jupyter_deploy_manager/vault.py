"""Secrets kept encrypted at rest (Fernet), the key they are kept with, and the keys derived from it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

import jupyter_deploy_contract as contract

from .errors import ApiError
from .store import Store

log = logging.getLogger("jupyter_deploy_manager")

KEY_ENV = "JUPYTER_DEPLOY_SECRET_KEY"
"""Environment variable holding the Fernet key (urlsafe base64 of 32 bytes); it wins over the key file."""

KEY_FILE = "secret.key"
"""The key file's name in the data dir (``ManagerApp.secret_key_file`` picks another path)."""

REDACTED = "***"
"""What a secret's value is replaced with wherever the manager shows text that could hold it."""


def load_key(path: Path) -> bytes:
    """The Fernet key: from $JUPYTER_DEPLOY_SECRET_KEY, else ``path``, else a new one written there (0600)."""
    raw = os.environ.get(KEY_ENV, "").strip().encode()
    where = f"${KEY_ENV}"
    if not raw:
        where = str(path)
        try:
            raw = path.read_bytes().strip()
        except FileNotFoundError:
            raw = Fernet.generate_key()
            path.parent.mkdir(parents=True, exist_ok=True)
            # Created private, never widened: O_EXCL, so two managers starting at once do not both write one.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raw = path.read_bytes().strip()
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(raw + b"\n")
                log.info("generated the secrets key %s", path)
    try:
        Fernet(raw)
    except ValueError as exc:
        raise SystemExit(f"jupyter-deploy-manager: the secrets key in {where} is not a Fernet key "
                         "(urlsafe base64 of 32 bytes, e.g. from `python -c 'from cryptography.fernet import "
                         "Fernet; print(Fernet.generate_key().decode())'`)") from exc
    return raw


class Vault:
    """Sets, reads and removes secrets; values are Fernet tokens in the store and plain text only in memory."""

    def __init__(self, store: Store, key: bytes) -> None:
        self.store = store
        self._fernet = Fernet(key)
        # Derived keys (the runners' control keys) come from the same secret, under their own labels.
        self._root = hashlib.sha256(b"jupyter-deploy derived keys\0" + base64.urlsafe_b64decode(key)).digest()

    @staticmethod
    def check_name(name: str) -> None:
        """422 unless ``name`` can be a secret (it becomes the variable's name in the service)."""
        problem = contract.env_name_problem(name)
        if problem:
            raise ApiError(422, f"invalid secret name: {problem}", "invalid-name")

    def set(self, name: str, value: object, username: str | None) -> bool:
        """Encrypt and keep a secret; True when it replaced one of the same name."""
        self.check_name(name)
        problem = contract.env_value_problem(name, value)
        if problem is None and value == "":
            problem = f"the value of {name} is empty"
        if problem:
            raise ApiError(422, problem, "invalid-input")
        assert isinstance(value, str)
        return self.store.put_secret(name, self._fernet.encrypt(value.encode()), username)

    def has(self, name: str) -> bool:
        """Whether a secret of that name is set."""
        return self.store.get_secret(name) is not None

    def value(self, name: str) -> str:
        """A secret's value in the clear (for a runner's environment only)."""
        token = self.store.get_secret(name)
        if token is None:
            raise KeyError(name)
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise RuntimeError(f"secret {name} was encrypted with another key than this manager's") from exc

    def values(self, names: list[str]) -> dict[str, str]:
        """The values of ``names``; RuntimeError naming every one that is not set."""
        missing = [n for n in names if not self.has(n)]
        if missing:
            raise RuntimeError(f"secret {', '.join(missing)} is not set: set it with "
                               f"`jupyter-deploy secret set {missing[0]}`")
        return {n: self.value(n) for n in names}

    def names(self) -> list[dict[str, object]]:
        """Every secret's name and times (never a value)."""
        return self.store.list_secrets()

    def delete(self, name: str) -> bool:
        """Forget a secret; False when there was none."""
        return self.store.delete_secret(name)

    def derive(self, label: str) -> str:
        """A key for ``label`` only this manager (holding the secrets key) can compute, as hex."""
        return hmac.new(self._root, label.encode(), hashlib.sha256).hexdigest()


def redact(text: str, values: list[str]) -> str:
    """``text`` with every secret value in it replaced by ``***`` (longest first, so none is left half-shown)."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text

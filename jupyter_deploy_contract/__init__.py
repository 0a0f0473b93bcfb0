"""The contract shared by the three rooms: notebook side, manager and service runner.

One copy of everything they must agree on: the bundle format (manifest fields,
the tar holding it and the payload), the service name and version patterns,
the vocabulary of parameter types, the shape of an error answer, and how
values are encoded as JSON (NaN, numpy and pandas values included).

Only the standard library is imported, so this module is staged into images
and process stages next to the runner and runs where nothing else is
installed. numpy and pandas values are recognised through ``sys.modules``: a
value of theirs means they are imported already, and nothing here imports them.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import io
import json
import math
import os
import re
import sys
import tarfile
from pathlib import Path
from typing import Any, Union

# ---------------------------------------------------------------- bundle format

FORMAT = 1
"""The bundle format this side writes and reads."""

MANIFEST = "manifest.json"
"""The manifest's member name in a bundle and its file name in an extracted bundle."""

PAYLOAD = "payload.pkl"
"""The payload's member name in a bundle and its file name in an extracted bundle."""

MEMBERS = (MANIFEST, PAYLOAD)
"""The only members a bundle may hold."""

REQUIRED_FIELDS = ("name", "python", "cloudpickle", "entrypoints", "requirements", "payload")
"""Manifest fields every bundle carries."""

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
"""Largest manifest accepted: samples are a few rows, so anything bigger is no manifest."""

COPY_CHUNK = 1024 * 1024
"""Bytes read at a time when a payload is copied out of a bundle: extraction never holds it whole."""

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a manifest."""

Source = Union[bytes, bytearray, str, "os.PathLike[str]"]


class ContractError(ValueError):
    """Something does not follow the contract; ``str(self)`` says what, for the user."""


# ---------------------------------------------------------------- names and versions

SERVICE_NAME_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?"
"""Service names become container and URL parts: lowercase letters, digits, dashes."""

SERVICE_NAME_RULE = "1-48 lowercase letters, digits and dashes, starting and ending with a letter or digit"
"""The name rule in words, for error messages."""

VERSION_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,30}[A-Za-z0-9])?"
"""Versions: letters, digits, '.', '_' and '-'."""

VERSION_RULE = "1-32 letters, digits, '.', '_' and '-', starting and ending with a letter or digit"
"""The version rule in words, for error messages."""

_SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)


def is_service_name(name: object) -> bool:
    """Whether ``name`` is a valid service name, matched as a whole string (a trailing newline fails)."""
    return isinstance(name, str) and _SERVICE_NAME.fullmatch(name) is not None


def is_version(version: object) -> bool:
    """Whether ``version`` is a valid version, matched as a whole string."""
    return isinstance(version, str) and _VERSION.fullmatch(version) is not None


def anchored(pattern: str) -> str:
    """A pattern anchored for JSON Schema, whose ``$`` (ECMA-262) matches only at the very end."""
    return f"^{pattern}$"


# ---------------------------------------------------------------- a service's environment

ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
"""Names of environment variables a service gets (``env``) and of secrets (``secrets``, injected by name)."""

ENV_NAME_RULE = "1-128 letters, digits and '_', not starting with a digit"

RESERVED_ENV = ("PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "LANG", "TZ")
"""Variables the runtime sets for the runner; a deploy may not replace them."""

RESERVED_ENV_PREFIXES = ("JUPYTER_DEPLOY_", "PYTHON", "LD_", "LC_")
"""Prefixes of variables that steer the runner or its interpreter; a deploy may not set them."""

MAX_ENV_VALUE = 32 * 1024
"""Longest value of one ``env`` variable or secret, in characters."""

_ENV_NAME = re.compile(ENV_NAME_PATTERN)


def env_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a service's environment variable or secret, or None when it can."""
    if not isinstance(name, str) or _ENV_NAME.fullmatch(name) is None:
        return f"{name!r} is no variable name: use {ENV_NAME_RULE}"
    if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
        return (f"{name} is set by the runtime itself (reserved: {', '.join(RESERVED_ENV)} and names starting "
                f"{', '.join(RESERVED_ENV_PREFIXES)})")
    return None


def env_value_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be the value of variable ``name`` (the text is never quoted), or None."""
    if not isinstance(value, str):
        return f"the value of {name} must be a string, not {type(value).__name__}"
    if "\0" in value:
        return f"the value of {name} holds a NUL character, which no environment variable can"
    if len(value) > MAX_ENV_VALUE:
        return f"the value of {name} is {len(value)} characters, over the limit of {MAX_ENV_VALUE}"
    return None


def check_environment(env: object, secrets: object) -> None:
    """A manifest's ``env`` (name -> value) and ``secrets`` (names) follow the rules; ContractError if not."""
    if env is not None:
        if not isinstance(env, dict):
            raise ContractError("manifest.json: 'env' must be an object of variable name -> string value")
        for key, value in env.items():
            problem = env_name_problem(key) or env_value_problem(key, value)
            if problem:
                raise ContractError(f"manifest.json: env: {problem}")
    if secrets is not None:
        if not isinstance(secrets, list):
            raise ContractError("manifest.json: 'secrets' must be a list of secret names")
        for key in secrets:
            problem = env_name_problem(key)
            if problem:
                raise ContractError(f"manifest.json: secrets: {problem}")
        if len(set(secrets)) != len(secrets):
            raise ContractError("manifest.json: 'secrets' names a secret twice")
        both = sorted(set(secrets) & set(env or {}))
        if both:
            raise ContractError(f"manifest.json: {', '.join(both)} is both a secret and a plain env variable")


# ---------------------------------------------------------------- what only the manager asks a runner

CONTROL_KEY_ENV = "JUPYTER_DEPLOY_CONTROL_SHA256"
"""The runner's environment variable holding the sha256 (hex) of the key of its control routes."""

CONTROL_HEADER = "X-Jupyter-Deploy-Control"
"""Request header carrying that key; a control route answers 404 without the right one."""

SMOKE_PATH = "/-/smoke/"
"""``POST {runner}/-/smoke/<entrypoint>``: call the entrypoint on the manifest's sample and answer what happened
(its value, or its exception with the frames of the user's code); never proxied to callers."""

SECRETS_FILE_ENV = "JUPYTER_DEPLOY_SECRETS_FILE"
"""The runner's environment variable naming a JSON file of variables to set before the payload loads (how the
docker runtime hands over secret values without putting them in the container's configuration)."""


# ---------------------------------------------------------------- parameter types

PARAM_TYPES = ("dataframe", "series", "ndarray", "int", "float", "str", "bool", "list", "dict", "any")
"""Every ``parameters[].type`` a manifest may name; anything else is read as ``any``."""

SCALAR_TYPES = ("int", "float", "str", "bool", "list", "dict")
"""Parameter types checked against the JSON value's own type."""

SAMPLE_KINDS = ("dataframe", "ndarray", "json")
"""Every ``sample.kind`` a manifest may name."""

JSON_SCHEMA_TYPES = {"int": "integer", "float": "number", "str": "string", "bool": "boolean",
                     "list": "array", "dict": "object"}
"""The JSON Schema type of each scalar parameter type."""


def param_type(raw: object) -> str:
    """The parameter type a manifest entry means: one of PARAM_TYPES."""
    return raw if isinstance(raw, str) and raw in PARAM_TYPES else "any"


# ---------------------------------------------------------------- error answers

PROBLEMS = ("missing", "unexpected", "type", "dtype", "shape", "value")
"""What a 422's ``errors[].problem`` may say."""

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error answer: a message for people and a reason for programs.",
    "properties": {
        "message": {"type": "string", "description": "What went wrong, naming the field or column."},
        "reason": {"type": "string", "description": "Machine-readable reason, e.g. invalid-input."},
        "errors": {
            "type": "array",
            "description": "With 422: one entry per problem, all of them at once.",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "column": {"type": "string"},
                    "problem": {"type": "string", "enum": list(PROBLEMS)},
                    "expected": {"type": "string"},
                    "got": {"type": "string"},
                },
                "required": ["field", "problem"],
            },
        },
    },
    "required": ["message", "reason"],
}
"""JSON Schema of every error answer, from the runner, the manager and the server extension."""


def error_body(reason: str, message: str, **extra: Any) -> dict[str, Any]:
    """An error answer: ``{"message": ..., "reason": ...}`` plus extra fields (``errors`` for a 422)."""
    return {"message": message, "reason": reason, **extra}


def error_json(reason: str, message: str, **extra: Any) -> bytes:
    """``error_body`` as JSON bytes (strict JSON, like every answer)."""
    return dumps(error_body(reason, message, **extra))


def read_error(body: object, fallback: str) -> tuple[str, str | None]:
    """The message and reason of a parsed error answer; ``fallback`` when it has no message."""
    if isinstance(body, dict):
        message = body.get("message")
        reason = body.get("reason")
        return (message if isinstance(message, str) and message else fallback,
                reason if isinstance(reason, str) else None)
    return fallback, None


# ---------------------------------------------------------------- manifests


def _depth_ok(value: Any, limit: int) -> bool:
    # Iterative: a recursive walk would hit the recursion limit on the inputs it must refuse.
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _finite(value: Any) -> bool:
    # Iterative, as _depth_ok; 1e400 parses as an infinity that no answer could carry as JSON.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _nesting(raw: bytes) -> int:
    """Deepest bracket nesting of JSON text (brackets in strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_manifest(raw: bytes) -> dict[str, Any]:
    """Parse and check a manifest's bytes; raise ContractError naming the problem."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ContractError(f"manifest.json is {len(raw)} bytes, over the limit of {MAX_MANIFEST_BYTES}")
    if _nesting(raw) > MAX_JSON_DEPTH:
        raise ContractError(f"manifest.json is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        # NaN and Infinity are Python's extensions to JSON: every room reads the manifest, not only Python.
        manifest = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ContractError(f"manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ContractError("manifest.json must hold a JSON object")
    check_manifest(manifest)
    return manifest


def check_manifest(manifest: dict[str, Any]) -> None:
    """The fields every reader relies on must be there with the right shapes; raise ContractError if not."""
    if manifest.get("format") != FORMAT:
        raise ContractError(f"unsupported bundle format {manifest.get('format')!r} (this side reads {FORMAT})")
    for key in REQUIRED_FIELDS:
        if key not in manifest:
            raise ContractError(f"manifest.json lacks {key!r}")
    if not _depth_ok(manifest, MAX_JSON_DEPTH):
        raise ContractError(f"manifest.json is nested more than {MAX_JSON_DEPTH} levels deep")
    if not _finite(manifest):
        raise ContractError("manifest.json holds a number too large for a float (such as 1e400), "
                            "which no JSON answer can carry")
    for key in ("python", "cloudpickle"):
        if not isinstance(manifest[key], str):
            raise ContractError(f"manifest.json: {key!r} must be a string")
    entrypoints = manifest["entrypoints"]
    if not isinstance(entrypoints, list) or not entrypoints:
        raise ContractError("manifest.json: 'entrypoints' must be a non-empty list")
    seen: set[str] = set()
    for i, entry in enumerate(entrypoints):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].isidentifier():
            raise ContractError(f"manifest.json: entrypoint #{i} must be an object with an identifier 'name'")
        if entry["name"] in seen:
            raise ContractError(f"manifest.json: entrypoint {entry['name']!r} appears twice")
        seen.add(entry["name"])
        params = entry.get("parameters", [])
        if not isinstance(params, list) or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str) for p in params
        ):
            raise ContractError(f"manifest.json: parameters of {entry['name']!r} must be objects with a 'name'")
    requirements = manifest["requirements"]
    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
        raise ContractError("manifest.json: 'requirements' must be a list of strings")
    for key in ("sample", "features"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise ContractError(f"manifest.json: {key!r} must be an object or null")
    check_environment(manifest.get("env"), manifest.get("secrets"))
    payload = manifest["payload"]
    if not isinstance(payload, dict) or not isinstance(payload.get("sha256"), str):
        raise ContractError("manifest.json: 'payload' must be an object with a 'sha256' string")


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def check_payload(manifest: dict[str, Any], payload: bytes) -> None:
    """Raise ContractError when the payload is not the one the manifest names."""
    expected = manifest["payload"].get("sha256")
    actual = sha256_hex(payload)
    if expected != actual:
        raise ContractError(f"payload checksum mismatch: manifest says {expected}, payload is {actual}")


# ---------------------------------------------------------------- bundles (tar)


def pack(manifest: dict[str, Any], payload: bytes) -> tuple[bytes, dict[str, Any]]:
    """Pack a manifest and payload into bundle bytes, filling in format and payload checksum."""
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
    return buf.getvalue(), manifest


def _open(source: Source) -> tarfile.TarFile:
    try:
        if isinstance(source, (bytes, bytearray)):
            return tarfile.open(fileobj=io.BytesIO(source), mode="r:")
        return tarfile.open(os.fspath(source), mode="r:")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ContractError(f"not a bundle (expected an uncompressed tar): {exc}") from exc


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    try:
        fh = tar.extractfile(member)
        data = fh.read() if fh is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ContractError(f"bundle is cut short inside {member.name!r}: {exc}") from exc
    if len(data) != member.size:
        raise ContractError(f"bundle is cut short inside {member.name!r}: {len(data)} of {member.size} bytes")
    return data


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    found: dict[str, tarfile.TarInfo] = {}
    try:
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ContractError(f"bundle is cut short or damaged (not a complete tar: {exc})") from exc
    for member in members:
        name = member.name
        if name not in MEMBERS:
            raise ContractError(f"unexpected member {name!r} in bundle (only {', '.join(MEMBERS)} allowed)")
        if not member.isfile():
            raise ContractError(f"bundle member {name!r} is not a regular file")
        if name in found:
            raise ContractError(f"bundle member {name!r} appears twice")
        found[name] = member
    missing = [m for m in MEMBERS if m not in found]
    if missing:
        raise ContractError(f"bundle lacks {', '.join(missing)}")
    return found


def read_bundle(source: Source) -> tuple[dict[str, Any], bytes, bytes]:
    """Check a bundle's structure, manifest and payload checksum; return (manifest, its raw bytes, payload).

    Never unpickles anything, so the manager can use it on untrusted uploads.
    """
    with _open(source) as tar:
        members = _members(tar)
        manifest_raw = _read_member(tar, members[MANIFEST])
        manifest = parse_manifest(manifest_raw)
        payload = _read_member(tar, members[PAYLOAD])
    check_payload(manifest, payload)
    return manifest, manifest_raw, payload


def read_manifest(source: Source) -> dict[str, Any]:
    """The checked manifest of a bundle, without reading its payload."""
    with _open(source) as tar:
        members = _members(tar)
        return parse_manifest(_read_member(tar, members[MANIFEST]))


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> str:
    """Copy one member to ``dest`` in chunks; return its sha256. ContractError when the tar ends inside it."""
    digest = hashlib.sha256()
    copied = 0
    try:
        source = tar.extractfile(member)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ContractError(f"bundle is cut short inside {member.name!r}: {exc}") from exc
    with open(dest, "wb") as out:
        while True:
            try:
                chunk = source.read(COPY_CHUNK) if source is not None else b""
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ContractError(f"bundle is cut short inside {member.name!r}: {exc}") from exc
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            copied += len(chunk)
    if copied != member.size:
        raise ContractError(f"bundle is cut short inside {member.name!r}: {copied} of {member.size} bytes")
    return digest.hexdigest()


def extract(source: Source, dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Unpack a bundle's two files into ``dest`` after checking it; return the manifest.

    The payload is copied in chunks while its checksum is computed, so a bundle of any size (a path, for a
    large one) takes little memory; when the bundle is refused, neither file is left in ``dest``.
    """
    target = Path(dest)
    with _open(source) as tar:
        members = _members(tar)
        manifest_raw = _read_member(tar, members[MANIFEST])
        manifest = parse_manifest(manifest_raw)
        target.mkdir(parents=True, exist_ok=True)
        partial = target / f".{PAYLOAD}.partial"
        try:
            actual = _copy_member(tar, members[PAYLOAD], partial)
            expected = manifest["payload"].get("sha256")
            if expected != actual:
                raise ContractError(f"payload checksum mismatch: manifest says {expected}, payload is {actual}")
            (target / MANIFEST).write_bytes(manifest_raw)
            os.replace(partial, target / PAYLOAD)
        finally:
            partial.unlink(missing_ok=True)
    return manifest


def write_extracted(dest: str | os.PathLike[str], manifest_raw: bytes, payload: bytes) -> None:
    """Write an extracted bundle: the two files by their fixed names, so nothing escapes ``dest``."""
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    (target / MANIFEST).write_bytes(manifest_raw)
    (target / PAYLOAD).write_bytes(payload)


def read_extracted(bundle_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
    """The checked manifest and payload of an extracted bundle; raise ContractError (or OSError) if bad."""
    directory = Path(bundle_dir)
    manifest = parse_manifest((directory / MANIFEST).read_bytes())
    payload = (directory / PAYLOAD).read_bytes()
    check_payload(manifest, payload)
    return manifest, payload


# ---------------------------------------------------------------- value encoding


class Unserialisable(TypeError):
    """A value holds something JSON cannot represent; ``type_name`` names it."""

    def __init__(self, type_name: str) -> None:
        super().__init__(f"{type_name} cannot be sent as JSON")
        self.type_name = type_name


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}".removeprefix("builtins.")


def _known(obj: Any, frames: str) -> Any:
    """A JSON-ready stand-in for one value json does not know; raise Unserialisable otherwise."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None:
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "Mm":
                return [_known(x, frames) for x in obj]
            return obj.tolist()
        if isinstance(obj, np.datetime64):
            return None if np.isnat(obj) else str(np.datetime_as_string(obj))
        if isinstance(obj, np.timedelta64):
            return None if np.isnat(obj) else str(obj)
        if isinstance(obj, np.generic):
            value = obj.item()
            if isinstance(value, (bool, int, float, str)) or value is None:
                return value
            raise Unserialisable(type(obj).__name__)
    if pd is not None:
        if obj is pd.NaT or obj is pd.NA:
            return None
        if isinstance(obj, pd.DataFrame):
            if frames == "split":
                return _split(obj)
            return obj.to_dict(orient="records")
        if isinstance(obj, pd.Series):
            return _column(obj)
        if isinstance(obj, (pd.Index, pd.Categorical)):
            return obj.tolist()
        if isinstance(obj, pd.Timedelta):
            return obj.isoformat()
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, _dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    raise Unserialisable(_type_name(obj))


def _column(series: Any) -> list[Any]:
    # Missing values as None; floats keep their exact value (to_json would round them).
    values = series.tolist()
    if series.hasnans:
        values = [None if missing else v for v, missing in zip(values, series.isna().tolist())]
    return values


def _split(frame: Any) -> dict[str, Any]:
    columns = [_column(frame.iloc[:, i]) for i in range(frame.shape[1])]
    data = [list(row) for row in zip(*columns)] if columns else [[] for _ in range(len(frame))]
    return {"columns": frame.columns.tolist(), "data": data}


def _key(key: Any, frames: str, unknown: str) -> Any:
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    value = to_plain(key, frames=frames, unknown=unknown)
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def to_plain(obj: Any, *, frames: str = "records", unknown: str = "raise", infinity: str = "null",
             _depth: int = 0) -> Any:
    """``obj`` rebuilt from plain JSON values: NaN and infinities become None.

    DataFrames become records, or pandas' split form with ``frames="split"``;
    anything JSON cannot hold raises Unserialisable, or becomes its ``str`` with ``unknown="str"``;
    with ``infinity="keep"`` infinities stay floats (NaN still becomes None).
    """
    if _depth > sys.getrecursionlimit() // 4:
        raise Unserialisable(f"{type(obj).__name__} (circular or too deeply nested)")
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj) or (infinity == "keep" and obj == obj):
            return float(obj)
        return None
    if isinstance(obj, dict):
        return {_key(k, frames, unknown): to_plain(v, frames=frames, unknown=unknown, infinity=infinity,
                                                   _depth=_depth + 1)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, frames=frames, unknown=unknown, infinity=infinity, _depth=_depth + 1) for v in obj]
    try:
        known = _known(obj, frames)
    except Unserialisable:
        if unknown == "str":
            return str(obj)
        raise
    return to_plain(known, frames=frames, unknown=unknown, infinity=infinity, _depth=_depth + 1)


OVERFLOW = "1e999"
"""How a request carries an infinity: a JSON number past the float range, which every parser reads as one."""

# json writes an infinity as the token Infinity, which is no JSON; a string is skipped whole, so a quoted
# "Infinity" is left alone.
_INFINITY_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?)Infinity')


def dumps(obj: Any, *, frames: str = "records", infinity: str = "null") -> bytes:
    """Compact JSON bytes of a value, encoded as ``to_plain`` describes; never NaN or Infinity.

    Infinities become null, or with ``infinity="overflow"`` (requests, so the service can refuse them
    where it expects a number instead of reading a missing value) ``1e999`` and ``-1e999``.
    """
    try:
        # Fast path (the C encoder): fine unless a NaN/inf or an odd dict key shows up.
        return json.dumps(obj, default=lambda o: _known(o, frames), allow_nan=False, separators=(",", ":")).encode()
    except Unserialisable:
        raise
    except (ValueError, TypeError, RecursionError):
        pass
    keep = infinity == "overflow"
    try:
        plain = to_plain(obj, frames=frames, infinity="keep" if keep else "null")
        text = json.dumps(plain, allow_nan=keep, separators=(",", ":"))
    except RecursionError as exc:
        raise Unserialisable(f"{type(obj).__name__} (circular or too deeply nested)") from exc
    if keep:
        text = _INFINITY_TOKEN.sub(lambda m: m.group(0) if m.group(1) is None else m.group(1) + OVERFLOW, text)
    return text.encode()

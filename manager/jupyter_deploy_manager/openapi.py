"""OpenAPI 3.1 documents of deployed services, built from their manifests (never from the payload)."""

from __future__ import annotations

import copy
import re
from typing import Any

import jupyter_deploy_contract as contract

from . import __version__

ERROR_RESPONSES: dict[str, str] = {
    "400": "The body is not a JSON object.",
    "401": "No valid bearer token.",
    "403": "The token is for another service or scope.",
    "404": "Unknown service or entrypoint.",
    "413": "The body is larger than the manager takes for a call (ManagerApp.max_call_body_size).",
    "422": "The input does not fit the entrypoint; every missing, unexpected or mistyped field and column is named "
           "(numbers must be finite: no NaN, Infinity or 1e400).",
    "500": "The function raised; the traceback is in the service log, not here.",
    "502": "The service did not answer.",
    "503": "The service has no running version.",
    "504": "The service sent no answer within the manager's call timeout (ManagerApp.call_timeout); "
           "the call may still be running.",
}

# Swagger UI renders descriptions as Markdown with HTML, so manifest text (docstrings, annotations, dtypes,
# requirements: whatever the deployer wrote) would become markup in the docs page: an <img> fetching
# elsewhere, a fake token form. It goes in as text instead.
_MARKDOWN_PUNCTUATION = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")


def markdown_text(text: str) -> str:
    """Markdown that reads as ``text`` itself: every ASCII punctuation character escaped, so nothing is markup."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))


def markdown_block(text: str) -> str:
    """Markdown that shows ``text`` as written, line by line: an indented code block, inside which nothing is markup."""
    lines = str(text).expandtabs(4).splitlines() or [""]
    return "\n".join("    " + line if line.strip() else "" for line in lines)


_SCALARS: dict[str, dict[str, Any]] = {kind: {"type": schema} for kind, schema in contract.JSON_SCHEMA_TYPES.items()}

_RETURNS: dict[str, dict[str, Any]] = {
    "list": {"type": "array"},
    "dict": {"type": "object"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "None": {"type": "null"},
    "numpy.ndarray": {"type": "array"},
    "pandas.Series": {"type": "array"},
    "pandas.DataFrame": {"type": "array", "items": {"type": "object"}, "description": "records"},
}


def _dtype_kind(dtype: str) -> str:
    """Column type from a pandas dtype string (for samples without a schema)."""
    d = dtype.lower()
    if d.startswith(("int", "uint")):
        return "integer"
    if d.startswith("float"):
        return "number"
    if d.startswith("bool"):
        return "boolean"
    if d.startswith("datetime"):
        return "datetime"
    if d == "category":
        return "category"
    if d in ("object", "string", "str") or d.startswith("string"):
        return "string"
    return "any"


def column_schema(info: dict[str, Any]) -> dict[str, Any]:
    """JSON schema of one DataFrame column's values."""
    kind = info.get("type") or _dtype_kind(str(info.get("dtype", "")))
    nullable = bool(info.get("nullable"))
    categories = info.get("categories")
    if kind == "category" and categories:
        # The service refuses values outside a categorical column's categories.
        values = list(categories) + ([None] if nullable else [])
        schema: dict[str, Any] = {"enum": values}
    elif kind == "string" and categories:
        # A plain string column takes any string; the sample's values are shown, not enforced.
        schema = {"type": ["string", "null"] if nullable else "string", "examples": list(categories)}
    elif kind == "datetime":
        schema = {"type": ["string", "null"] if nullable else "string", "format": "date-time"}
    elif kind in ("integer", "number", "boolean", "string"):
        # Integers are numbers in JSON; a float column also takes ints.
        schema = {"type": [kind, "null"] if nullable else kind}
    else:
        schema = {}
    if info.get("dtype"):
        schema["description"] = f"dtype {markdown_text(info['dtype'])}"
    return schema


def _frame_columns(sample: dict[str, Any] | None, features: dict[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    """Column name -> column info, from the sample or else from what the model knows."""
    if sample and sample.get("kind") == "dataframe":
        schema = sample.get("schema") or {}
        dtypes = sample.get("dtypes") or {}
        return {c: schema.get(c) or {"dtype": dtypes.get(c, "")} for c in sample.get("columns", [])}
    if features and features.get("names"):
        return {str(n): {"type": "number", "description": "feature the model was fitted on"} for n in features["names"]}
    return None


def dataframe_schema(columns: dict[str, dict[str, Any]] | None, n_features: int | None = None) -> dict[str, Any]:
    """A DataFrame parameter: records, a dict of columns, or pandas' split form."""
    if columns is None:
        row = {"type": "array", "items": {}}
        if n_features:
            row.update(minItems=n_features, maxItems=n_features)
        return {
            "anyOf": [
                {"type": "array", "items": {"type": "object"}, "description": "records: one object per row"},
                {"type": "object", "description": "columns: name -> list of values"},
                {"type": "object", "properties": {"columns": {"type": "array"}, "data": {"type": "array", "items": row}},
                 "required": ["columns", "data"], "description": "pandas split form"},
            ]
        }
    names = list(columns)
    per_column = {c: column_schema(info) for c, info in columns.items()}
    return {
        "anyOf": [
            {
                "title": "records",
                "type": "array",
                "description": "One object per row.",
                "items": {"type": "object", "properties": per_column, "required": names, "additionalProperties": False},
            },
            {
                "title": "columns",
                "type": "object",
                "description": "Column name -> list of values (all lists of one length).",
                "properties": {c: {"type": "array", "items": s} for c, s in per_column.items()},
                "required": names,
                "additionalProperties": False,
            },
            {
                "title": "split",
                "type": "object",
                "description": "pandas' split form: to_dict(orient='split').",
                "properties": {
                    "columns": {"type": "array", "items": {"enum": names}, "minItems": len(names), "maxItems": len(names), "uniqueItems": True},
                    "data": {"type": "array", "items": {"type": "array", "minItems": len(names), "maxItems": len(names)}},
                    "index": {"type": "array"},
                },
                "required": ["columns", "data"],
                "additionalProperties": False,
            },
        ]
    }


def ndarray_schema(sample: dict[str, Any] | None, features: dict[str, Any] | None) -> dict[str, Any]:
    """A numpy array parameter: nested lists whose trailing shape and item type come from the sample."""
    dtype = str((sample or {}).get("dtype", ""))
    item: dict[str, Any] = {"integer": {"type": "integer"}, "number": {"type": "number"},
                            "boolean": {"type": "boolean"}, "string": {"type": "string"}}.get(_dtype_kind(dtype), {})
    shape = list((sample or {}).get("shape") or [])
    if not shape and features and features.get("n"):
        shape = [None, int(features["n"])]
    schema: dict[str, Any] = item
    for size in reversed(shape[1:]):
        schema = {"type": "array", "items": schema, "minItems": size, "maxItems": size}
    schema = {"type": "array", "items": schema}
    if dtype:
        schema["description"] = markdown_text(f"dtype {dtype}, shape {tuple(shape)}")
    return schema


def parameter_schema(param: dict[str, Any], first: bool, sample: dict[str, Any] | None,
                     features: dict[str, Any] | None) -> dict[str, Any]:
    """Schema of one entrypoint parameter."""
    kind = param.get("type", "any")
    sample_kind = (sample or {}).get("kind") if first else None
    if kind == "any" and first:
        # The runner treats an unannotated first parameter like the sample.
        if sample_kind in ("dataframe", "ndarray"):
            kind = sample_kind
        elif sample_kind is None and features and features.get("names"):
            kind = "dataframe"
    if kind == "dataframe":
        schema = dataframe_schema(
            _frame_columns(sample if first else None, features),
            (features or {}).get("n") if not (features or {}).get("names") else None,
        )
    elif kind == "ndarray":
        schema = ndarray_schema(sample if sample_kind == "ndarray" else None, features)
    elif kind == "series":
        schema = {"type": "array"}
    else:
        schema = copy.deepcopy(_SCALARS.get(kind, {}))
        if kind == "float":
            schema = {"type": "number"}
    if param.get("annotation"):
        schema["description"] = (schema.get("description", "")
                                  + f" (annotation: {markdown_text(param['annotation'])})").strip()
    if "default" in param:
        schema["default"] = param["default"]
    return schema


def _placeholder(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    return {"integer": 1, "number": 1.0, "string": "text", "boolean": True, "array": [], "object": {}}.get(kind, None)


def example_body(entrypoint: dict[str, Any], sample: dict[str, Any] | None, features: dict[str, Any] | None,
                 schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A request body a user can send as is: rows of the sample, defaults, placeholders."""
    body: dict[str, Any] = {}
    for i, param in enumerate(entrypoint.get("parameters", [])):
        name = param["name"]
        if i == 0 and sample:
            kind = sample.get("kind")
            if kind == "dataframe":
                columns = sample.get("columns") or []
                body[name] = [{c: row.get(c) for c in columns} for row in sample.get("records", [])[:3]]
            elif kind == "ndarray":
                body[name] = sample.get("data", [])[:3]
            else:
                body[name] = sample.get("data")
        elif i == 0 and features and features.get("names") and param.get("type") in ("dataframe", "any"):
            body[name] = [{str(n): 0.0 for n in features["names"]}]
        elif param.get("required", True) or "default" in param:
            value = _placeholder(schemas[name])
            if value is not None or not param.get("required", True):
                body[name] = value
    return body


def _operation(entrypoint: dict[str, Any], sample: dict[str, Any] | None,
               features: dict[str, Any] | None) -> dict[str, Any]:
    params = entrypoint.get("parameters", [])
    schemas = {p["name"]: parameter_schema(p, i == 0, sample, features) for i, p in enumerate(params)}
    body_schema = {
        "type": "object",
        "properties": schemas,
        "required": [p["name"] for p in params if p.get("required", True)],
        "additionalProperties": False,
    }
    returns = entrypoint.get("returns")
    result = copy.deepcopy(_RETURNS.get(str(returns), {}))
    result["description"] = (f"The JSON of the return value ({markdown_text(returns)})" if returns
                             else "The JSON of the return value")
    doc = entrypoint.get("doc") or ""
    responses: dict[str, Any] = {
        "200": {"description": "The function's answer.", "content": {"application/json": {"schema": result}}}
    }
    for code, text in ERROR_RESPONSES.items():
        responses[code] = {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return {
        "operationId": entrypoint["name"],
        "summary": doc.split("\n", 1)[0] or f"Call {entrypoint['name']}",
        # Signature and docstring as preformatted text: docstrings are written for a terminal, not a browser.
        "description": markdown_block(f"{entrypoint['name']}{entrypoint.get('signature', '()')}\n\n{doc}".rstrip()),
        "requestBody": {
            # The runner reads no body as {}: with every parameter defaulted, none is needed.
            "required": any(p.get("required", True) for p in params),
            "content": {
                "application/json": {
                    "schema": body_schema,
                    "example": example_body(entrypoint, sample, features, schemas),
                }
            },
        },
        "responses": responses,
    }


def service_document(name: str, version: str, manifest: dict[str, Any], server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one version of a service."""
    sample = manifest.get("sample")
    features = manifest.get("features")
    paths = {
        f"/{e['name']}": {"post": _operation(e, sample, features)} for e in manifest.get("entrypoints", [])
    }
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "summary": "Whether the service answers",
            "responses": {
                "200": {
                    "description": "The service is up.",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"status": {"type": "string"}, "name": {"type": "string"},
                                       "version": {"type": ["string", "null"]},
                                       "entrypoints": {"type": "array", "items": {"type": "string"}}},
                        "required": ["status"],
                    }}},
                },
                **{code: {"description": ERROR_RESPONSES[code],
                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                   for code in ("401", "403", "404", "502", "503", "504")},
            },
        }
    }
    reqs = ", ".join(manifest.get("requirements", [])[:8])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": name,
            "version": version,
            "description": (
                f"Deployed with jupyter-deploy {__version__} from a notebook (Python {manifest.get('python')}). "
                f"Send `Authorization: Bearer <token>`. Requirements: {markdown_text(reqs)}"
                + (" ..." if len(manifest.get("requirements", [])) > 8 else "")
            ),
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": {"Error": contract.ERROR_SCHEMA},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }

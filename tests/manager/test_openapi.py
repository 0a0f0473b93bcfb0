"""The manager's own OpenAPI document: valid 3.1, and in step with the routes app.py really serves."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
import requests
import tornado.web

from jupyter_deploy_manager.api_spec import manager_document
from jupyter_deploy_manager.app import make_app

METHODS = ("get", "post", "put", "patch", "delete")
PUBLIC = {"health", "login", "managerDocument", "managerDocs", "serviceDocs", "serviceDocsVersion",
          "dashboard"}
# Values put into path templates to find the route a documented path lands on.
SAMPLE_PARAMS = {"name": "iris", "version": "0.1.0", "entrypoint": "predict", "token_id": "0123abcd",
                 "username": "alice", "secret": "DB_URL"}


def _routes() -> list[tuple[re.Pattern[str], type]]:
    """(regex, handler class) of every route, in tornado's matching order."""
    app = make_app(None, None, None, None)  # type: ignore[arg-type]  # only the route table is read
    return [(rule.matcher.regex, rule.target) for rule in app.wildcard_router.rules]


def _implemented(handler: type) -> set[str]:
    """HTTP methods a handler class really answers."""
    return {m for m in METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}


def _handler_for(path: str) -> type | None:
    for regex, handler in _routes():
        if regex.match(path):
            return handler
    return None


def _concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMS[m.group(1)], template)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    """The document as served for a manager at a made-up address."""
    return manager_document("http://manager.example:8765")


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    try:
        from openapi_spec_validator import validate
    except ImportError:  # not a dependency: structural checks below still run
        validate = None
    if validate is not None:
        validate(doc)
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "http://manager.example:8765"}]
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_every_operation_documents_its_errors_and_its_auth(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        templated = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == templated, (method, path)
            public = op.get("security") == []
            assert public == (op["operationId"] in PUBLIC), (method, path)
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), (method, path)
            if not public:
                assert "401" in codes, (method, path)
            for code, response in op["responses"].items():
                if not code.startswith("2"):
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert doc["components"]["schemas"]["Error"]["required"] == ["message", "reason"]
    assert doc["security"] == [{"bearerAuth": []}]


def test_every_route_of_the_app_is_documented_and_nothing_else(doc: dict[str, Any]) -> None:
    documented: dict[type, set[str]] = {}
    for path, item in doc["paths"].items():
        handler = _handler_for(_concrete(path))
        assert handler is not None, f"{path} is documented but no route serves it"
        assert set(item) <= _implemented(handler), f"{path}: documents {set(item)}, {handler.__name__} answers fewer"
        documented.setdefault(handler, set()).update(item)
    for regex, handler in _routes():
        if regex.pattern.startswith("/static/"):
            continue  # Swagger UI's own files
        assert documented.get(handler) == _implemented(handler), (
            f"route {regex.pattern} ({handler.__name__}) answers {sorted(_implemented(handler))}, "
            f"documented: {sorted(documented.get(handler, set()))}"
        )


def test_a_running_manager_serves_the_document_without_a_token(manager) -> None:
    resp = requests.get(f"{manager.url}/api/openapi.json", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == manager_document(manager.url)
    assert requests.get(f"{manager.url}/api/docs", timeout=10).status_code == 200

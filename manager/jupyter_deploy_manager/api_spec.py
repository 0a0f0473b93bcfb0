"""The manager's own REST API as an OpenAPI 3.1 document, served at ``GET /api/openapi.json``."""

from __future__ import annotations

import copy
from typing import Any

import jupyter_deploy_contract as contract

from . import __version__
from .auth import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, ROLES, SCOPES, USERNAME_RE
from .handlers import MAX_TOKEN_LIFETIME, BaseHandler

_ERROR_REF = {"$ref": "#/components/schemas/Error"}

# What each status means on this API; an operation lists only the statuses it can really answer.
_ERRORS: dict[str, str] = {
    "400": "The request is malformed: body not a JSON object, a path or query part not valid UTF-8, "
    "or (uploads) a missing/mismatching checksum or a bad bundle.",
    "401": "No bearer token, or an unknown, expired or revoked one.",
    "403": "The token's scope (or its user's role) does not allow this.",
    "404": "No such service, version, token or user.",
    "405": "The path names the runner's health route, which answers GET only.",
    "409": "The request conflicts with the current state, e.g. that version of the service or that user "
    "exists already, or deleting the user would remove the last admin or the caller.",
    "413": "The body is larger than the manager accepts: a bundle over ManagerApp.max_bundle_size, a call "
    "over ManagerApp.max_call_body_size, any other body over ManagerApp.max_api_body_size.",
    "422": "A field is missing, of the wrong type or out of range; the message names it.",
    "429": "Too many failed logins of this user from this address (or from this address): wait the seconds "
    "the Retry-After header says; the wait doubles with each further failure.",
    "500": "The manager or the runtime failed; details are in the manager's log.",
    "502": "The service did not answer.",
    "503": "The service has no running version, or it is shutting down.",
    "504": "The service sent no answer within the manager's call timeout (ManagerApp.call_timeout).",
}

_NAME = {
    "type": "string",
    "pattern": contract.anchored(contract.SERVICE_NAME_PATTERN),
    "description": "Service name: 1-48 lowercase letters, digits and dashes.",
}
_USERNAME = {
    "type": "string",
    "pattern": f"^{USERNAME_RE.pattern}$",
    "description": "User name: a lowercase letter, then up to 31 lowercase letters, digits, '_', '.' or '-'.",
}
_PASSWORD = {"type": "string", "minLength": MIN_PASSWORD_LENGTH, "maxLength": MAX_PASSWORD_LENGTH}
_VERSION = {
    "type": "string",
    "pattern": contract.anchored(contract.VERSION_PATTERN),
    "description": "Version, e.g. 0.1.0.",
}


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": copy.deepcopy(schema), "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(
    operation_id: str,
    summary: str,
    ok: tuple[str, str, dict[str, Any]],
    errors: list[str],
    *,
    tag: str,
    public: bool = False,
    description: str = "",
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One operation: its success answer and exactly the error statuses it can give."""
    status, text, content = ok
    responses: dict[str, Any] = {status: {"description": text, "content": content}}
    for code in errors:
        responses[code] = {"description": _ERRORS[code], "content": _json(_ERROR_REF)}
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag], "responses": responses}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


def _schemas() -> dict[str, Any]:
    """Component schemas of request and answer bodies."""
    iso = {"type": ["string", "null"], "format": "date-time"}
    return {
        "Error": contract.ERROR_SCHEMA,
        "MonitoredCall": {
            "type": "object",
            "properties": {
                "time": {"type": "string", "format": "date-time"},
                "version": {"type": "string"},
                "entrypoint": {"type": "string"},
                "status": {"type": "integer"},
                "latency_ms": {"type": "number"},
                "request": {"type": "string", "description": "The request body as sent (JSON text)."},
                "response": {"type": "string", "description": "The answer body (JSON text)."},
            },
            "required": ["time", "version", "entrypoint", "status", "latency_ms", "request", "response"],
        },
        "TrafficRequest": {
            "type": "object",
            "properties": {
                "canary": {
                    "type": ["object", "null"],
                    "properties": {"version": _VERSION, "weight": {"type": "integer", "minimum": 0, "maximum": 100}},
                    "required": ["version"],
                },
                "shadows": {"type": "array", "items": _VERSION},
            },
        },
        "Traffic": {
            "type": "object",
            "properties": {
                "canary": {
                    "type": ["object", "null"],
                    "properties": {"version": {"type": "string"}, "weight": {"type": "integer"}},
                },
                "shadows": {"type": "array", "items": {"type": "string"}},
                "shadow_stats": {"type": "object", "additionalProperties": {
                    "type": "object",
                    "properties": {"compared": {"type": "integer"}, "differ": {"type": "integer"},
                                   "errors": {"type": "integer"}},
                }},
            },
            "required": ["canary", "shadows", "shadow_stats"],
        },
        "Health": {
            "type": "object",
            "properties": {
                "status": {"const": "ok"},
                "runtime": {"type": "string", "enum": ["docker", "process", "swarm"]},
                "version": {"type": "string", "description": "The manager's version."},
            },
            "required": ["status", "runtime", "version"],
        },
        "LoginRequest": {
            "type": "object",
            "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
            "required": ["username", "password"],
        },
        "Login": {
            "type": "object",
            "properties": {
                "token": {"type": "string", "description": "The secret, shown once."},
                "token_id": {"type": "string"},
                "username": {"type": "string"},
                "scope": {"type": "string", "enum": ["admin", "deploy"]},
                "expires_at": {"type": ["string", "null"], "format": "date-time",
                               "description": "When the token stops working (ManagerApp.login_token_lifetime)."},
            },
            "required": ["token", "token_id", "username", "scope", "expires_at"],
        },
        "WhoAmI": {
            "type": "object",
            "properties": {
                "username": {"type": "string"},
                "scope": {"type": "string", "enum": list(SCOPES)},
                "service": {"type": ["string", "null"], "description": "The service of an invoke token."},
                "role": {"type": "string"},
            },
            "required": ["username", "scope", "service", "role"],
        },
        "ServiceSummary": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "main_version": {"type": ["string", "null"]},
                "status": {"type": "string", "description": "Status of the main (else latest) version."},
                "versions": {"type": "integer", "minimum": 0},
                "latest_version": {"type": ["string", "null"]},
                "entrypoints": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["name", "main_version", "status", "versions", "latest_version", "entrypoints"],
        },
        "Version": {
            "type": "object",
            "properties": {
                "version": {"type": "string"},
                "status": {"type": "string", "description": "building, starting, running, stopped or failed."},
                "desired": {"type": "string"},
                "error": {"type": ["string", "null"]},
                "created": iso,
                "updated": iso,
                "lock_hash": {"type": "string"},
                "python": {"type": ["string", "null"]},
                "entrypoints": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["version", "status", "desired", "error", "created", "updated", "lock_hash", "entrypoints"],
        },
        "Service": {
            "type": "object",
            "properties": {
                "previous_main": {"type": ["string", "null"], "description": "Where a rollback goes."},
                "traffic": _ref("Traffic"),
                "name": {"type": "string"},
                "main_version": {"type": ["string", "null"]},
                "status": {"type": "string"},
                "created_by": {"type": ["string", "null"]},
                "versions": {"type": "array", "items": _ref("Version")},
                "entrypoints": {
                    "type": "array",
                    "description": "Entrypoints of the main (else latest) version, as in its manifest.",
                    "items": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
                },
                "sample": {"type": ["object", "null"], "description": "The manifest's sample description."},
                "requirements": {"type": "array", "items": {"type": "string"}},
                "python": {"type": ["string", "null"]},
                "endpoint": {
                    "type": "string",
                    "description": "Where the runner answers; shown to deploy and admin tokens only.",
                },
            },
            "required": ["name", "main_version", "status", "created_by", "versions", "entrypoints", "sample",
                         "requirements", "python"],
        },
        "Upload": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "token": {"type": "string", "description": "An invoke token for the service, shown once."},
                "token_id": {"type": "string"},
                "url": {"type": "string", "description": "Base URL of the service's entrypoints."},
                "events_url": {"type": "string", "description": "NDJSON stream of the build's events."},
            },
            "required": ["name", "version", "token", "token_id", "url", "events_url"],
        },
        "Event": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "time": iso,
                "service": {"type": ["string", "null"]},
                "version": {"type": ["string", "null"]},
                "kind": {"type": "string", "description": "deployed, crashed, restarted, build failed, deleted, ..."},
                "message": {"type": "string"},
            },
            "required": ["id", "time", "service", "version", "kind", "message"],
        },
        "DeployEvent": {
            "type": "object",
            "description": "One line of the NDJSON deploy stream; the last one has kind result and a status.",
            "properties": {
                "seq": {"type": "integer", "minimum": 0},
                "time": {"type": "string", "format": "date-time"},
                "phase": {"type": "string",
                          "enum": ["upload", "build", "start", "health", "smoke", "done", "error"]},
                "kind": {"type": "string", "enum": ["phase", "log", "result"]},
                "message": {"type": "string"},
                "status": {"type": "string"},
                "failed_in": {"type": "string", "description": "With a failed result: the phase that failed."},
                "smoke": {
                    "type": "object",
                    "description": "With the result, once the smoke test ran: whether there was a sample, and "
                    "per entrypoint whether it was called (or why not), a preview of its answer, or its error "
                    "and the frames of the user's code. Secret values are replaced by ***.",
                    "properties": {"sample": {"type": "boolean"},
                                   "entrypoints": {"type": "array", "items": {"type": "object"}}},
                },
            },
            "required": ["seq", "time", "phase", "kind", "message"],
        },
        "Token": {
            "type": "object",
            "description": "A token without its secret.",
            "properties": {
                "id": {"type": "string"},
                "username": {"type": "string"},
                "scope": {"type": "string", "enum": list(SCOPES)},
                "service": {"type": ["string", "null"]},
                "note": {"type": ["string", "null"]},
                "created": iso,
                "expires_at": iso,
                "revoked": {"type": "boolean"},
                "active": {"type": "boolean"},
            },
            "required": ["id", "username", "scope", "service", "note", "created", "expires_at", "revoked", "active"],
        },
        "NewToken": {
            "allOf": [
                _ref("Token"),
                {
                    "type": "object",
                    "properties": {"token": {"type": "string", "description": "The secret, shown once."}},
                    "required": ["token"],
                },
            ]
        },
        "TokenRequest": {
            "type": "object",
            "properties": {
                "scope": {"type": "string", "enum": list(SCOPES), "default": "invoke"},
                "service": {"type": ["string", "null"], "description": "Needed for (and only used by) invoke tokens."},
                "expires_in": {
                    "type": ["number", "null"],
                    "exclusiveMinimum": 0,
                    "maximum": MAX_TOKEN_LIFETIME,
                    "description": "Lifetime in seconds; none means the token does not expire.",
                },
                "note": {"type": ["string", "null"], "description": "Shown in token lists."},
            },
            # scope defaults to invoke, so a body without scope needs a service too.
            "if": {"properties": {"scope": {"const": "invoke"}}},
            "then": {"required": ["service"], "properties": {"service": {"type": "string", "minLength": 1}}},
        },
        "User": {
            "type": "object",
            "description": "A user, without the password hash.",
            "properties": {
                "username": {"type": "string"},
                "role": {"type": "string", "enum": list(ROLES)},
                "created": iso,
            },
            "required": ["username", "role", "created"],
        },
        "UserRequest": {
            "type": "object",
            "properties": {
                "username": _USERNAME,
                "password": _PASSWORD,
                "role": {
                    "type": "string", "enum": list(ROLES), "default": "deployer",
                    "description": "admin: everything; deployer: deploy and manage services, create invoke and "
                    "deploy tokens; viewer: read services, logs and events, and invoke services.",
                },
            },
            "required": ["username", "password"],
        },
        "PasswordRequest": {
            "type": "object",
            "properties": {"password": _PASSWORD},
            "required": ["password"],
        },
    }


def _service_routes() -> dict[str, Any]:
    """``/services/{name}/...`` (and per version): invocation, health and the service's own docs."""
    name = _path_param("name", _NAME, "The service.")
    version = _path_param("version", _VERSION, "One version of the service, main or not.")
    entrypoint = _path_param(
        "entrypoint", {"type": "string", "minLength": 1}, "An entrypoint, as listed in the service's manifest."
    )
    invoke_errors = ["400", "401", "403", "404", "405", "413", "422", "500", "502", "503", "504"]
    body = {
        "required": True,
        "content": _json({
            "type": "object",
            "description": "Arguments keyed by parameter name; each service's own document "
            "(/services/{name}/openapi.json) has the exact schema.",
        }),
    }
    answer = ("200", "The JSON of the function's return value.", _json({}))
    health = (
        "200",
        "The runner answers.",
        _json({
            "type": "object",
            "properties": {
                "status": {"const": "ok"},
                "name": {"type": ["string", "null"]},
                "version": {"type": ["string", "null"]},
                "entrypoints": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["status", "name", "version", "entrypoints"],
        }),
    )
    document = ("200", "The OpenAPI 3.1 document of the service's entrypoints.", _json({
        "type": "object", "properties": {"openapi": {"type": "string"}}, "required": ["openapi", "info", "paths"],
    }))
    page = ("200", "An interactive page; it asks for a token before loading the document.",
            {"text/html": {"schema": {"type": "string"}}})
    paths: dict[str, Any] = {}
    for prefix, params, suffix, what in (
        ("/services/{name}", [name], "", "the main version"),
        ("/services/{name}/versions/{version}", [name, version], "Version", "one version"),
    ):
        paths[f"{prefix}/{{entrypoint}}"] = {"post": _op(
            f"invoke{suffix}", f"Call an entrypoint of {what}", answer, invoke_errors, tag="services",
            description="Proxied to the runner. 400, 422, 500 (the function raised or returned something "
            "JSON cannot hold) and 503 while draining come from the runner, with its reason.",
            parameters=[*params, entrypoint], body=body,
        )}
        paths[f"{prefix}/healthz"] = {"get": _op(
            f"serviceHealth{suffix}", f"Health of {what}", health,
            ["400", "401", "403", "404", "502", "503", "504"], tag="services", parameters=params,
        )}
        paths[f"{prefix}/openapi.json"] = {"get": _op(
            f"serviceDocument{suffix}", f"OpenAPI document of {what}", document,
            ["400", "401", "403", "404"], tag="services", parameters=params,
            description="An invoke token of the service may read it too.",
        )}
        paths[f"{prefix}/docs"] = {"get": _op(
            f"serviceDocs{suffix}", f"Interactive API page of {what}", page, ["400", "404"], tag="docs",
            public=True, parameters=params,
        )}
    return paths


def _user_routes() -> dict[str, Any]:
    """``/api/users...``: admins manage users; every user may change their own password."""
    username = _path_param("username", _USERNAME, "The user.")
    return {
        "/api/users": {
            "get": _op(
                "listUsers", "Users and their roles (admins only)",
                ("200", "Every user.", _json({
                    "type": "object",
                    "properties": {"users": {"type": "array", "items": _ref("User")}},
                    "required": ["users"],
                })),
                ["401", "403"], tag="users",
            ),
            "post": _op(
                "createUser", "Create a user (admins only)",
                ("201", "The new user.", _json(_ref("User"))),
                ["400", "401", "403", "409", "422"], tag="users",
                description="409: the name is taken. 422: a bad name, a password shorter than "
                f"{MIN_PASSWORD_LENGTH} characters, or an unknown role.",
                body={"required": True, "content": _json(_ref("UserRequest"))},
            ),
        },
        "/api/users/{username}": {"delete": _op(
            "deleteUser", "Delete a user and revoke all their tokens at once (admins only)",
            ("200", "Deleted.", _json({
                "type": "object", "properties": {"deleted": {"type": "string"}}, "required": ["deleted"],
            })),
            ["400", "401", "403", "404", "409"], tag="users",
            description="409: the user is the caller, or the last admin. Invoke tokens the user created "
            "(including those handed out at deploy) are revoked too.",
            parameters=[username],
        )},
        "/api/users/{username}/password": {"post": _op(
            "setPassword", "Set a user's password (admins for anyone, every user for themself)",
            ("200", "Changed; existing tokens stay valid.", _json({
                "type": "object",
                "properties": {"password_changed": {"type": "string"}},
                "required": ["password_changed"],
            })),
            ["400", "401", "403", "404", "422"], tag="users",
            description="403: another user's password without an admin-scope token of an admin, or an invoke "
            "token. 404 (admins only): no such user.",
            parameters=[username],
            body={"required": True, "content": _json(_ref("PasswordRequest"))},
        )},
    }


def _secret_routes() -> dict[str, Any]:
    """``/api/secrets...``: names and times for viewers; deployers set and remove them; values never come back."""
    secret = _path_param("secret", {"type": "string", "pattern": contract.anchored(contract.ENV_NAME_PATTERN)},
                         "The secret: also the name of the environment variable it becomes in the services using it.")
    listed = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "created": {"type": ["string", "null"], "format": "date-time"},
            "updated": {"type": ["string", "null"], "format": "date-time"},
            "updated_by": {"type": ["string", "null"]},
            "used_by": {"type": "array", "items": {"type": "string"}, "description": "\"service version\" each."},
        },
        "required": ["name", "used_by"],
    }
    moved = {"type": "array", "items": {"type": "object", "properties": {
        "service": {"type": "string"}, "version": {"type": "string"}, "error": {"type": "string"}}}}
    return {
        "/api/secrets": {"get": _op(
            "listSecrets", "Secrets: names, times and the versions using them (never a value)",
            ("200", "Every secret.", _json({
                "type": "object",
                "properties": {"secrets": {"type": "array", "items": listed}},
                "required": ["secrets"],
            })),
            ["401", "403"], tag="secrets",
        )},
        "/api/secrets/{secret}": {
            "put": _op(
                "setSecret", "Set a secret, encrypted at rest; running versions using it restart with it",
                ("200", "Set. Each running version that uses it moved to a runner started with the new value "
                 "(started beside the old one, which stopped after its calls: no call fails).", _json({
                     "type": "object",
                     "properties": {"name": {"type": "string"}, "replaced": {"type": "boolean"},
                                    "restarted": moved, "failed": moved},
                     "required": ["name", "replaced", "restarted", "failed"],
                 })),
                ["400", "401", "403", "422"], tag="secrets",
                description="The value is never answered, logged or kept in the clear. 422: a bad name "
                "(reserved ones included), or a value that is empty, not a string, or too long.",
                parameters=[secret],
                body={"required": True, "content": _json({
                    "type": "object", "properties": {"value": {"type": "string", "minLength": 1}},
                    "required": ["value"],
                })},
            ),
            "delete": _op(
                "deleteSecret", "Remove a secret",
                ("200", "Removed.", _json({
                    "type": "object",
                    "properties": {"deleted": {"type": "string"}, "used_by": {"type": "array",
                                                                             "items": {"type": "string"}}},
                    "required": ["deleted"],
                })),
                ["400", "401", "403", "404", "409", "422"], tag="secrets",
                description="409: versions use it; with force=1 it goes anyway, and they cannot start again "
                "until it is set.",
                parameters=[secret, _query("force", {"type": "string", "enum": ["0", "1", "true", "false"]},
                                           "Remove it even while versions use it.")],
            ),
        },
    }


def manager_document(server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the manager's REST API."""
    name = _path_param("name", _NAME, "The service.")
    login_body = {"required": True, "content": _json(_ref("LoginRequest"))}
    paths: dict[str, Any] = {
        "/api/health": {"get": _op(
            "health", "Whether the manager is up, and its runtime", ("200", "Up.", _json(_ref("Health"))), [],
            tag="manager", public=True,
        )},
        "/api/login": {"post": _op(
            "login", "Trade a password for a new token of the user's scope",
            ("200", "A new token.", _json(_ref("Login"))), ["400", "401", "422", "429"], tag="auth", public=True,
            body=login_body,
        )},
        "/api/whoami": {"get": _op(
            "whoami", "Describe the caller's token", ("200", "The token's user and scope.", _json(_ref("WhoAmI"))),
            ["401"], tag="auth",
        )},
        "/api/services": {"get": _op(
            "listServices", "List services with their main version's status",
            ("200", "Every service.", _json({
                "type": "object",
                "properties": {"services": {"type": "array", "items": _ref("ServiceSummary")}},
                "required": ["services"],
            })),
            ["401", "403"], tag="services",
        )},
        "/api/services/{name}": {
            "get": _op(
                "getService", "A service with its versions, entrypoints and sample",
                ("200", "The service.", _json(_ref("Service"))), ["400", "401", "403", "404"], tag="services",
                description="Deploy and admin tokens, or an invoke token of this service.", parameters=[name],
            ),
            "delete": _op(
                "deleteService", "Stop and remove a service, its versions and its invoke tokens",
                ("200", "Deleted.", _json({
                    "type": "object", "properties": {"deleted": {"type": "string"}}, "required": ["deleted"],
                })),
                ["400", "401", "403", "404", "500"], tag="services",
                parameters=[name, _query("keep_images", {"type": "string", "default": "0"},
                                         "1 or true: keep the built images, e.g. to roll back later.")],
            ),
        },
        "/api/services/{name}/versions": {"post": _op(
            "uploadVersion", "Upload a bundle; the new version builds in the background",
            ("202", "Accepted; follow events_url for the build.", _json(_ref("Upload"))),
            ["400", "401", "403", "409", "413", "422"], tag="deploy",
            description="A 422 names an invalid service name or version; 400 a missing or mismatching "
            "checksum or a bundle that is not a valid format-1 bundle.",
            parameters=[
                name,
                _query("main", {"type": "string", "enum": ["0", "1", "true", "false"], "default": "1"},
                       "0 or false: run the new version at its own path and leave main as it is "
                       "(promote it later); the first version is main anyway."),
                {"name": "X-Bundle-SHA256", "in": "header", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                 "description": "sha256 of the body, hex."},
            ],
            body={"required": True, "content": {"application/x-tar": {"schema": {
                "type": "string", "format": "binary", "contentMediaType": "application/x-tar",
                "description": "An uncompressed tar of manifest.json and payload.pkl.",
            }}}},
        )},
        "/api/services/{name}/versions/{version}/events": {"get": _op(
            "versionEvents", "The deploy's progress as NDJSON, one event a line",
            ("200", "Events until the version is running or failed (or the ones so far without follow).",
             {"application/x-ndjson": {"schema": {
                 "type": "string",
                 "description": "One DeployEvent (see the components) a line; the last has kind result.",
             }}}),
            ["400", "401", "403", "404", "422"], tag="deploy",
            parameters=[
                name,
                _path_param("version", _VERSION, "The version."),
                _query("follow", {"type": "string", "default": "1"},
                       "0 or false: answer the events so far; anything else (default 1): keep the stream open "
                       "until the deploy finishes."),
                _query("since", {"type": "integer", "minimum": 0, "default": 0}, "First event (seq) to send."),
            ],
        )},
        "/api/services/{name}/logs": {"get": _op(
            "serviceLogs", "Tail of a version's log",
            ("200", "The last lines of the log.", {"text/plain": {"schema": {"type": "string"}}}),
            ["400", "401", "403", "404", "422"], tag="services",
            parameters=[
                name,
                _query("tail", {"type": "integer", "default": 200},
                       "Lines to show; clamped to 1..100000."),
                _query("version", _VERSION, "The version (default: main, else the latest)."),
                _query("follow", {"type": "string", "default": "0"},
                       "1 or true: after the tail, keep the stream open and send new lines as they come."),
            ],
        )},
        "/api/services/{name}/promote": {"post": _op(
            "promote", "Make a version main with no downtime",
            ("200", "The service, with its new main.", _json(_ref("Service"))),
            ["400", "401", "403", "404", "409", "422"], tag="versions",
            description="The version is started if needed and must pass its health check before traffic "
            "switches; requests in flight to the old main finish. 409: it cannot run (still building, or "
            "unhealthy); main is then unchanged.",
            parameters=[name],
            body={"required": True, "content": _json({
                "type": "object", "properties": {"version": _VERSION}, "required": ["version"],
            })},
        )},
        "/api/services/{name}/traffic": {
            "get": _op(
                "getTraffic", "Canary weight and shadow versions, with how often each shadow differed from main",
                ("200", "The settings.", _json(_ref("Traffic"))), ["400", "401", "403", "404"], tag="versions",
                parameters=[name],
            ),
            "put": _op(
                "setTraffic", "Send a share of main's calls to a canary; mirror every call to shadows",
                ("200", "The new settings.", _json(_ref("Traffic"))), ["400", "401", "403", "404", "409", "422"],
                tag="versions",
                description="Canary and shadows are started if needed and must be healthy first (409 otherwise). "
                "A shadow's answers are discarded; whether they equal main's is counted. The answer's "
                "X-Service-Version header names the version that served a call.",
                parameters=[name],
                body={"required": True, "content": _json(_ref("TrafficRequest"))},
            ),
        },
        "/api/services/{name}/monitor": {"get": _op(
            "monitoredCalls", "Requests and answers of monitored entrypoints (newest `limit`, oldest first)",
            ("200", "The calls.", {
                "application/json": {"schema": {
                    "type": "object",
                    "properties": {"records": {"type": "array", "items": _ref("MonitoredCall")}},
                    "required": ["records"],
                }},
                "text/csv": {"schema": {"type": "string", "description": "Columns: " + ", ".join(
                    ("time", "version", "entrypoint", "status", "latency_ms", "request", "response"))}},
            }),
            ["400", "401", "403", "404", "422"], tag="versions",
            description="Entrypoints are monitored when deployed with `--monitor` (or `monitor=`); the manager "
            "keeps a bounded number of calls per service.",
            parameters=[
                name,
                _query("entrypoint", {"type": "string"}, "Only this entrypoint."),
                _query("version", _VERSION, "Only this version."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100000, "default": 1000}, "How many."),
                _query("format", {"type": "string", "enum": ["json", "csv"], "default": "json"}, "Answer format."),
            ],
        )},
        "/api/services/{name}/usage": {"get": _op(
            "serviceUsage", "Memory and CPU time of each running version",
            ("200", "Per version: memory_mb and cpu_seconds, or null when the runtime cannot tell.", _json({
                "type": "object",
                "properties": {"usage": {"type": "object", "additionalProperties": {
                    "type": ["object", "null"],
                    "properties": {"memory_mb": {"type": "number"}, "cpu_seconds": {"type": "number"}},
                }}},
                "required": ["usage"],
            })),
            ["400", "401", "403", "404"], tag="services", parameters=[name],
        )},
        "/api/services/{name}/rollback": {"post": _op(
            "rollback", "Promote the version that was main before the current one",
            ("200", "The service, with its new main.", _json(_ref("Service"))),
            ["400", "401", "403", "404", "409"], tag="versions",
            description="409: there is no previous main, or it did not become healthy.",
            parameters=[name],
        )},
        **{f"/api/services/{{name}}/{action}": {"post": _op(
            f"{action}Service",
            {"stop": "Stop every running version", "start": "Start the main version again",
             "restart": "Restart every running version"}[action],
            ("200", "The service.", _json(_ref("Service"))),
            ["400", "401", "403", "404", "409"], tag="versions",
            description="409: the version is still building, or did not become healthy.",
            parameters=[name],
        )} for action in ("stop", "start", "restart")},
        "/api/services/{name}/versions/{version}": {
            "get": _op(
                "getVersion", "One version's status",
                ("200", "The version.", _json({"type": "object"})),
                ["400", "401", "403", "404"], tag="versions",
                parameters=[name, _path_param("version", _VERSION, "The version.")],
            ),
            "delete": _op(
                "deleteVersion", "Remove one version (the last one removes the service)",
                ("200", "The service without that version.", _json({"type": "object"})),
                ["400", "401", "403", "404", "409", "500"], tag="versions",
                description="409: the version is main while others exist; promote another first.",
                parameters=[name, _path_param("version", _VERSION, "The version."),
                            _query("keep_images", {"type": "string", "default": "0"}, "1 or true: keep its image.")],
            ),
        },
        **{f"/api/services/{{name}}/versions/{{version}}/{action}": {"post": _op(
            f"{action}Version", f"{action.capitalize()} one version",
            ("200", "The service.", _json(_ref("Service"))),
            ["400", "401", "403", "404", "409"], tag="versions",
            description="409: the version is still building, or did not become healthy.",
            parameters=[name, _path_param("version", _VERSION, "The version.")],
        )} for action in ("stop", "start", "restart")},
        "/api/events": {"get": _op(
            "listEvents", "Recorded events, newest first (at most 100)",
            ("200", "Events.", _json({
                "type": "object",
                "properties": {"events": {"type": "array", "items": _ref("Event")}},
                "required": ["events"],
            })),
            ["400", "401", "403"], tag="manager",
            parameters=[_query("service", {"type": "string"}, "Only events of this service.")],
        )},
        "/api/tokens": {
            "get": _op(
                "listTokens", "Tokens, without their secrets (all for admins, one's own otherwise)",
                ("200", "Tokens.", _json({
                    "type": "object",
                    "properties": {"tokens": {"type": "array", "items": _ref("Token")}},
                    "required": ["tokens"],
                })),
                ["401", "403"], tag="auth",
            ),
            "post": _op(
                "createToken", "Create a token",
                ("201", "The new token; its secret is shown only here.", _json(_ref("NewToken"))),
                ["400", "401", "403", "404", "422"], tag="auth",
                description="Deploy tokens of deployers and admins may create invoke and deploy tokens; "
                "admin tokens need an admin. 404: the invoke token's service does not exist.",
                body={"required": True, "content": _json(_ref("TokenRequest"))},
            ),
        },
        "/api/tokens/{token_id}": {"delete": _op(
            "revokeToken", "Revoke a token (one's own, or any for admins)",
            ("200", "Revoked.", _json({
                "type": "object", "properties": {"revoked": {"type": "string"}}, "required": ["revoked"],
            })),
            ["400", "401", "403", "404"], tag="auth",
            parameters=[_path_param("token_id", {"type": "string", "minLength": 1}, "The token's id.")],
        )},
        **_user_routes(),
        **_secret_routes(),
        "/api/openapi.json": {"get": _op(
            "managerDocument", "This document", ("200", "OpenAPI 3.1.", _json({"type": "object"})), [],
            tag="docs", public=True,
        )},
        "/api/docs": {"get": _op(
            "managerDocs", "Interactive page of this API",
            ("200", "HTML.", {"text/html": {"schema": {"type": "string"}}}), [], tag="docs", public=True,
        )},
        "/": {"get": _op(
            "dashboard", "The dashboard: services, logs, tokens and users in the browser",
            ("200", "HTML; its script and style sheet are under /static/dashboard/.",
             {"text/html": {"schema": {"type": "string"}}}), [], tag="docs", public=True,
            description="The page itself is public; it logs in with POST /api/login and then calls this API "
            "with that bearer token, kept in the tab's sessionStorage.",
        )},
        **_service_routes(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jupyter-deploy manager",
            "version": __version__,
            "description": (
                "Deploy notebook-captured models as services, manage them and their tokens, and call them. "
                "Send `Authorization: Bearer <token>` (from POST /api/login or `jupyter-deploy login`). "
                "Every error is JSON `{\"message\", \"reason\"}`."
            ),
        },
        "servers": [{"url": server_url}],
        "tags": [
            {"name": "manager", "description": "Health and events."},
            {"name": "auth", "description": "Login and tokens."},
            {"name": "users", "description": "Users and their roles: admins manage them; anyone may change "
             "their own password."},
            {"name": "services", "description": "Services, their logs, and calling them."},
            {"name": "deploy", "description": "Uploading bundles and following builds."},
            {"name": "secrets", "description": "Secrets services get as environment variables; values go in, "
             "never out."},
            {"name": "docs", "description": "API documents and pages."},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }


class ApiOpenAPIHandler(BaseHandler):
    """``GET /api/openapi.json``: the manager's document; public, like the page that shows it."""

    def get(self) -> None:
        """Answer the document with this request's base URL as its server."""
        self.send(manager_document(f"{self.request.protocol}://{self.request.host}"))

"""SQLite store: users, tokens, services, versions and events, kept in the data dir."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    scope TEXT NOT NULL,
    service TEXT,
    note TEXT,
    created REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    main_version TEXT,
    created REAL NOT NULL,
    created_by TEXT
);
CREATE TABLE IF NOT EXISTS versions (
    service TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    desired TEXT NOT NULL DEFAULT 'running',
    manifest TEXT NOT NULL,
    lock_hash TEXT NOT NULL,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (service, version)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    service TEXT,
    version TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_service ON events (service, id);
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    service TEXT NOT NULL,
    version TEXT NOT NULL,
    entrypoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_by_service ON predictions (service, id);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    updated_by TEXT
);
"""

MONITOR_TRIM_EVERY = 100
"""Monitored calls of one service between two trims of its rows to its bound (smaller for small bounds)."""


@dataclass
class User:
    """A manager user."""

    username: str
    password_hash: str
    role: str
    created: float | None = None

    def public(self) -> dict[str, Any]:
        """JSON-safe view without the password hash."""
        return {"username": self.username, "role": self.role, "created": _iso(self.created)}


@dataclass
class TokenRecord:
    """A stored token (its secret is never stored, only its hash)."""

    id: str
    username: str
    scope: str
    service: str | None
    note: str | None
    created: float
    expires_at: float | None
    revoked_at: float | None

    @property
    def active(self) -> bool:
        """Not revoked and not expired."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > time.time()

    def public(self) -> dict[str, Any]:
        """JSON-safe view without secrets."""
        return {
            "id": self.id,
            "username": self.username,
            "scope": self.scope,
            "service": self.service,
            "note": self.note,
            "created": _iso(self.created),
            "expires_at": _iso(self.expires_at),
            "revoked": self.revoked_at is not None,
            "active": self.active,
        }


@dataclass
class VersionRecord:
    """One deployed version of a service."""

    service: str
    version: str
    status: str
    desired: str
    manifest: dict[str, Any]
    lock_hash: str
    error: str | None
    created: float
    updated: float
    # Which runner serves the version: a new generation replaces the old when its secrets rotate.
    generation: int = 0

    def public(self) -> dict[str, Any]:
        """JSON-safe summary."""
        return {
            "version": self.version,
            "status": self.status,
            "desired": self.desired,
            "error": self.error,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "lock_hash": self.lock_hash,
            "python": self.manifest.get("python"),
            "entrypoints": [e["name"] for e in self.manifest.get("entrypoints", [])],
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Store:
    """Thread-safe access to the manager's SQLite database."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared under a lock: the manager's load is small and
        # runtime threads write events too.
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        # Monitored calls kept per service since this start: each service is trimmed on its own count.
        self._monitored_calls: dict[str, int] = {}
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        # Columns added after the first release; databases of older managers gain them here.
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(services)").fetchall()}
        if "previous_main" not in columns:
            self._db.execute("ALTER TABLE services ADD COLUMN previous_main TEXT")
        if "traffic" not in columns:
            self._db.execute("ALTER TABLE services ADD COLUMN traffic TEXT")
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(versions)").fetchall()}
        if "generation" not in columns:
            self._db.execute("ALTER TABLE versions ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # users
    def get_user(self, username: str) -> User | None:
        """The user of that name, or None."""
        rows = self._rows(
            "SELECT username, password_hash, role, created FROM users WHERE username = ?", (username,)
        )
        return User(**dict(rows[0])) if rows else None

    def put_user(self, username: str, password_hash: str, role: str) -> None:
        """Create or update a user."""
        self._exec(
            "INSERT INTO users (username, password_hash, role, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role",
            (username, password_hash, role, time.time()),
        )

    def list_users(self) -> list[User]:
        """All users."""
        rows = self._rows("SELECT username, password_hash, role, created FROM users ORDER BY username")
        return [User(**dict(r)) for r in rows]

    def add_user(self, username: str, password_hash: str, role: str) -> bool:
        """Create a user; False when the name is taken (never overwrites, unlike put_user)."""
        try:
            self._exec(
                "INSERT INTO users (username, password_hash, role, created) VALUES (?, ?, ?, ?)",
                (username, password_hash, role, time.time()),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def set_password(self, username: str, password_hash: str) -> bool:
        """Replace a user's password hash; False for an unknown user."""
        cur = self._exec("UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username))
        return cur.rowcount > 0

    def delete_user(self, username: str) -> bool:
        """Delete a user and revoke all their tokens; False (nothing changed) if absent or the last admin."""
        with self._lock:
            # One transaction: the last-admin check, the delete and the revocation cannot interleave.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = self._db.execute(
                    "DELETE FROM users WHERE username = ? AND "
                    "(role != 'admin' OR (SELECT COUNT(*) FROM users WHERE role = 'admin') > 1)",
                    (username,),
                ).rowcount
                if deleted:
                    self._db.execute(
                        "UPDATE tokens SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL",
                        (time.time(), username),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return deleted > 0

    # tokens
    def add_token(
        self,
        token_id: str,
        token_hash: str,
        username: str,
        scope: str,
        service: str | None,
        expires_at: float | None,
        note: str | None = None,
    ) -> TokenRecord:
        """Store a new token's hash and metadata."""
        now = time.time()
        self._exec(
            "INSERT INTO tokens (id, token_hash, username, scope, service, note, created, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (token_id, token_hash, username, scope, service, note, now, expires_at),
        )
        return TokenRecord(token_id, username, scope, service, note, now, expires_at, None)

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        """Look a token up by the hash of its secret."""
        rows = self._rows(
            "SELECT id, username, scope, service, note, created, expires_at, revoked_at FROM tokens WHERE token_hash = ?",
            (token_hash,),
        )
        return TokenRecord(**dict(rows[0])) if rows else None

    def get_token(self, token_id: str) -> TokenRecord | None:
        """Look a token up by its public id."""
        rows = self._rows(
            "SELECT id, username, scope, service, note, created, expires_at, revoked_at FROM tokens WHERE id = ?",
            (token_id,),
        )
        return TokenRecord(**dict(rows[0])) if rows else None

    def list_tokens(self, username: str | None = None) -> list[TokenRecord]:
        """Tokens, optionally only one user's."""
        sql = "SELECT id, username, scope, service, note, created, expires_at, revoked_at FROM tokens"
        args: tuple = ()
        if username is not None:
            sql += " WHERE username = ?"
            args = (username,)
        return [TokenRecord(**dict(r)) for r in self._rows(sql + " ORDER BY created", args)]

    def revoke_token(self, token_id: str) -> None:
        """Mark a token revoked."""
        self._exec("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), token_id))

    def revoke_service_tokens(self, service: str) -> None:
        """Revoke every invoke token of a deleted service."""
        self._exec(
            "UPDATE tokens SET revoked_at = ? WHERE service = ? AND revoked_at IS NULL", (time.time(), service)
        )

    def delete_expired_tokens(self, now: float) -> int:
        """Forget every token that expired before ``now``; return how many."""
        return self._exec("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)).rowcount

    # services and versions
    def ensure_service(self, name: str, created_by: str | None) -> None:
        """Create the service row if missing."""
        self._exec(
            "INSERT OR IGNORE INTO services (name, main_version, created, created_by) VALUES (?, NULL, ?, ?)",
            (name, time.time(), created_by),
        )

    def get_service(self, name: str) -> dict[str, Any] | None:
        """The service row as a dict, or None."""
        rows = self._rows(
            "SELECT name, main_version, previous_main, traffic, created, created_by FROM services WHERE name = ?",
            (name,),
        )
        return dict(rows[0]) if rows else None

    def list_services(self) -> list[dict[str, Any]]:
        """All service rows."""
        return [
            dict(r)
            for r in self._rows(
                "SELECT name, main_version, previous_main, traffic, created, created_by FROM services ORDER BY name"
            )
        ]

    def set_main(self, name: str, version: str | None) -> None:
        """Point the service's main at a version, remembering the one before for a rollback."""
        with self._lock:
            row = self._db.execute("SELECT main_version FROM services WHERE name = ?", (name,)).fetchone()
            previous = row["main_version"] if row else None
            if previous == version:
                return
            self._db.execute(
                "UPDATE services SET main_version = ?, previous_main = ? WHERE name = ?", (version, previous, name)
            )

    def add_prediction(
        self, service: str, version: str, entrypoint: str, status: int, latency_ms: float,
        request: str, response: str, keep: int,
    ) -> None:
        """Keep one monitored call; only the newest ``keep`` of a service are kept (give or take a trim step)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO predictions (time, service, version, entrypoint, status, latency_ms, request, response) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), service, version, entrypoint, status, latency_ms, request, response),
            )
            count = self._monitored_calls.get(service, 0)
            self._monitored_calls[service] = count + 1
            # Trimming every few rows keeps inserts cheap; the bound overshoots by at most one step. Counted
            # per service (a global row id would leave a quiet service untrimmed), from its first call on.
            if count % max(1, min(MONITOR_TRIM_EVERY, keep // 10)) == 0:
                self._db.execute(
                    "DELETE FROM predictions WHERE service = ? AND id <= "
                    "(SELECT id FROM predictions WHERE service = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (service, service, keep),
                )

    def list_predictions(
        self, service: str, entrypoint: str | None = None, version: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Monitored calls of a service, oldest first (the newest ``limit``)."""
        sql = "SELECT * FROM predictions WHERE service = ?"
        args: list[Any] = [service]
        if entrypoint:
            sql += " AND entrypoint = ?"
            args.append(entrypoint)
        if version:
            sql += " AND version = ?"
            args.append(version)
        rows = self._rows(f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?) ORDER BY id", (*args, limit))
        return [dict(r, time=_iso(r["time"])) for r in rows]

    def delete_predictions(self, service: str) -> None:
        """Forget a deleted service's monitored calls."""
        with self._lock:
            self._monitored_calls.pop(service, None)
            self._db.execute("DELETE FROM predictions WHERE service = ?", (service,))

    def set_traffic(self, name: str, traffic: dict[str, Any] | None) -> None:
        """Store a service's canary and shadow settings."""
        self._exec("UPDATE services SET traffic = ? WHERE name = ?", (json.dumps(traffic) if traffic else None, name))

    def delete_version(self, service: str, version: str) -> None:
        """Forget one version."""
        with self._lock:
            self._db.execute("DELETE FROM versions WHERE service = ? AND version = ?", (service, version))
            self._db.execute(
                "UPDATE services SET previous_main = NULL WHERE name = ? AND previous_main = ?", (service, version)
            )

    def delete_service(self, name: str) -> None:
        """Forget a service and its versions."""
        with self._lock:
            self._db.execute("DELETE FROM versions WHERE service = ?", (name,))
            self._db.execute("DELETE FROM services WHERE name = ?", (name,))

    def add_version(self, service: str, version: str, manifest: dict[str, Any], lock_hash: str) -> None:
        """Record a new version in state 'building'."""
        now = time.time()
        self._exec(
            "INSERT INTO versions (service, version, status, desired, manifest, lock_hash, created, updated) "
            "VALUES (?, ?, 'building', 'running', ?, ?, ?, ?)",
            (service, version, json.dumps(manifest), lock_hash, now, now),
        )

    def set_version_status(
        self, service: str, version: str, status: str, error: str | None = None, desired: str | None = None
    ) -> None:
        """Update a version's status (and optionally its desired state)."""
        if desired is None:
            self._exec(
                "UPDATE versions SET status = ?, error = ?, updated = ? WHERE service = ? AND version = ?",
                (status, error, time.time(), service, version),
            )
        else:
            self._exec(
                "UPDATE versions SET status = ?, error = ?, desired = ?, updated = ? WHERE service = ? AND version = ?",
                (status, error, desired, time.time(), service, version),
            )

    def set_generation(self, service: str, version: str, generation: int) -> None:
        """Record which generation of its runner serves a version."""
        self._exec("UPDATE versions SET generation = ?, updated = ? WHERE service = ? AND version = ?",
                   (generation, time.time(), service, version))

    # secrets (values encrypted by the caller: the store never sees them in the clear)
    def put_secret(self, name: str, value: bytes, username: str | None) -> bool:
        """Create or replace an encrypted secret; True when it existed before."""
        with self._lock:
            existed = self._db.execute("SELECT 1 FROM secrets WHERE name = ?", (name,)).fetchone() is not None
            now = time.time()
            self._db.execute(
                "INSERT INTO secrets (name, value, created, updated, updated_by) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated = excluded.updated, "
                "updated_by = excluded.updated_by",
                (name, value, now, now, username),
            )
        return existed

    def get_secret(self, name: str) -> bytes | None:
        """The encrypted value of a secret, or None."""
        rows = self._rows("SELECT value FROM secrets WHERE name = ?", (name,))
        return bytes(rows[0]["value"]) if rows else None

    def list_secrets(self) -> list[dict[str, Any]]:
        """Every secret's name and times, never its value."""
        rows = self._rows("SELECT name, created, updated, updated_by FROM secrets ORDER BY name")
        return [dict(r, created=_iso(r["created"]), updated=_iso(r["updated"])) for r in rows]

    def delete_secret(self, name: str) -> bool:
        """Forget a secret; False when there was none."""
        return self._exec("DELETE FROM secrets WHERE name = ?", (name,)).rowcount > 0

    def _version(self, row: sqlite3.Row) -> VersionRecord:
        data = dict(row)
        data["manifest"] = json.loads(data["manifest"])
        return VersionRecord(**data)

    def get_version(self, service: str, version: str) -> VersionRecord | None:
        """One version, or None."""
        rows = self._rows("SELECT * FROM versions WHERE service = ? AND version = ?", (service, version))
        return self._version(rows[0]) if rows else None

    def list_versions(self, service: str | None = None) -> list[VersionRecord]:
        """Versions of one service (or all), oldest first."""
        if service is None:
            rows = self._rows("SELECT * FROM versions ORDER BY service, created")
        else:
            rows = self._rows("SELECT * FROM versions WHERE service = ? ORDER BY created", (service,))
        return [self._version(r) for r in rows]

    # events
    def add_event(self, kind: str, message: str, service: str | None = None, version: str | None = None) -> None:
        """Record an event (deployed, crashed, restarted, build failed, ...)."""
        self._exec(
            "INSERT INTO events (time, service, version, kind, message) VALUES (?, ?, ?, ?, ?)",
            (time.time(), service, version, kind, message),
        )

    def list_events(self, service: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest events first."""
        if service is None:
            rows = self._rows("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._rows("SELECT * FROM events WHERE service = ? ORDER BY id DESC LIMIT ?", (service, limit))
        return [dict(r, time=_iso(r["time"])) for r in rows]

    def iter_events(self) -> Iterator[dict[str, Any]]:
        """All events, oldest first."""
        for row in self._rows("SELECT * FROM events ORDER BY id"):
            yield dict(row)

"""Users, password hashes and scoped bearer tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from .errors import ApiError
from .store import Store, TokenRecord, User

SCOPES = ("admin", "deploy", "invoke")
ROLES = ("admin", "deployer", "viewer")
TOKEN_PREFIX = "jdt_"
USERNAME_RE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
"""What a new user name must be (whole string): short, lowercase, safe in paths and shells."""
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
"""Longest password taken: scrypt runs on the event loop, so its input stays bounded."""
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """A salted scrypt hash, self-describing so parameters can change later."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """Whether a password matches a stored hash (constant time)."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algo != "scrypt":
        return False
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), dklen=len(expected), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(expected, actual)


def hash_token(token: str) -> str:
    """Tokens are 256-bit random, so a plain sha256 is enough and keeps checks cheap."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for, and what it may do."""

    token_id: str
    username: str
    scope: str
    service: str | None
    role: str

    def may_deploy(self) -> bool:
        """Deploy, list and manage services."""
        return self.scope in ("admin", "deploy") and self.role in ("admin", "deployer")

    def may_view(self) -> bool:
        """Read service lists, status and logs."""
        return self.scope in ("admin", "deploy")

    def may_invoke(self, service: str) -> bool:
        """Call a service's entrypoints."""
        if self.scope == "invoke":
            return self.service == service
        return self.scope in ("admin", "deploy")

    def is_admin(self) -> bool:
        """Manage users and every token."""
        return self.scope == "admin" and self.role == "admin"

    def may_set_password(self, username: str) -> bool:
        """Change that user's password: admins for anyone, every user for themself."""
        # Not with an invoke token: those are handed to a service's callers, not kept by the user.
        return self.is_admin() or (self.username == username and self.may_view())

    def refusal(self, action: str) -> str:
        """Why this principal may not do ``action``, naming its role when the role is what stops it."""
        if self.scope in ("admin", "deploy") and self.role not in ("admin", "deployer"):
            return f"user {self.username!r} has role {self.role!r}, which cannot {action}"
        return f"a token of scope {self.scope!r} (user role {self.role!r}) cannot {action}"


class Auth:
    """Verifies passwords and tokens; caches verified tokens briefly for the proxy's hot path."""

    def __init__(self, store: Store, cache_seconds: float = 10.0):
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def ensure_admin(self, password: str | None) -> str | None:
        """Create the admin user on first start; return a generated password to print once, if any."""
        user = self.store.get_user("admin")
        if user is None:
            generated = None
            if not password:
                generated = password = secrets.token_urlsafe(18)
            self.store.put_user("admin", hash_password(password), "admin")
            return generated
        if password and not check_password(password, user.password_hash):
            # The environment is the source of truth for the admin password.
            self.store.put_user("admin", hash_password(password), "admin")
        return None

    def login(self, username: str, password: str) -> tuple[str, TokenRecord] | None:
        """Check a password and issue a token matching the user's role, or None."""
        user = self.store.get_user(username)
        if user is None:
            # Spend the same time as a real check so user names cannot be probed.
            check_password(password, hash_password("x"))
            return None
        if not check_password(password, user.password_hash):
            return None
        scope = "admin" if user.role == "admin" else "deploy"
        return self.issue(username, scope, None, None, note="login")

    def issue(
        self,
        username: str,
        scope: str,
        service: str | None,
        expires_in: float | None,
        note: str | None = None,
    ) -> tuple[str, TokenRecord]:
        """Create a token; the secret is returned once and stored only as a hash."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r} (one of {', '.join(SCOPES)})")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = time.time() + expires_in if expires_in else None
        record = self.store.add_token(
            secrets.token_hex(6), hash_token(secret), username, scope, service, expires_at, note
        )
        return secret, record

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid token, or None (unknown, expired, revoked)."""
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal, expires_at = self._lookup(token)
        ttl = self.cache_seconds
        if expires_at is not None:
            # The cache must not outlive the token's expiry.
            ttl = min(ttl, max(0.0, expires_at - time.time()))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now + ttl, principal)
        return principal

    def _lookup(self, token: str) -> tuple[Principal | None, float | None]:
        record = self.store.token_by_hash(hash_token(token))
        if record is None or not record.active:
            return None, None
        user = self.store.get_user(record.username)
        if user is None:
            return None, None
        return Principal(record.id, record.username, record.scope, record.service, user.role), record.expires_at

    def revoke(self, token_id: str) -> None:
        """Revoke a token; takes effect at once in this process."""
        self.store.revoke_token(token_id)
        self._cache.clear()

    def revoke_service(self, service: str) -> None:
        """Revoke every invoke token of a service."""
        self.store.revoke_service_tokens(service)
        self._cache.clear()

    # users
    def users(self) -> list[User]:
        """Every user."""
        return self.store.list_users()

    def add_user(self, username: object, password: object, role: object) -> User:
        """Create a user; 422 for a bad name, password or role, 409 when the name is taken."""
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise ApiError(
                422,
                "username must be 1-32 characters: a lowercase letter, then lowercase letters, digits, '_', '.' or '-'",
                "invalid-input",
            )
        if role not in ROLES:
            raise ApiError(422, f"role must be one of {', '.join(ROLES)}, not {role!r}", "invalid-input")
        digest = hash_password(_checked_password(password))
        if not self.store.add_user(username, digest, str(role)):
            raise ApiError(409, f"user {username!r} exists already", "user-exists")
        user = self.store.get_user(username)
        assert user is not None
        return user

    def delete_user(self, username: str, caller: str) -> None:
        """Delete a user and revoke all their tokens at once; never oneself nor the last admin."""
        if self.store.get_user(username) is None:
            raise ApiError(404, f"no user named {username!r}", "unknown-user")
        if username == caller:
            raise ApiError(409, "you cannot delete yourself; another admin can", "cannot-delete-self")
        if not self.store.delete_user(username):
            raise ApiError(409, f"{username!r} is the last admin; make another admin first", "last-admin")
        # Cached principals of the user's tokens must not outlive the user.
        self._cache.clear()

    def set_password(self, username: str, password: object) -> None:
        """Replace a user's password (their existing tokens stay valid); 404 for an unknown user."""
        digest = hash_password(_checked_password(password))
        if not self.store.set_password(username, digest):
            raise ApiError(404, f"no user named {username!r}", "unknown-user")


def _checked_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ApiError(
            422,
            f"password must be a string of {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            "invalid-input",
        )
    return password


class LoginLimiter:
    """Refuses logins for a while after too many failures from one address or for one user."""

    def __init__(self, max_failures: int = 10, window: float = 60.0):
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str) -> list[float]:
        cutoff = time.monotonic() - self.window
        stamps = [t for t in self._failures.get(key, []) if t > cutoff]
        self._failures[key] = stamps
        return stamps

    def allow(self, address: str, username: str) -> bool:
        """Whether a login attempt may be checked now."""
        return all(len(self._recent(k)) < self.max_failures for k in (f"ip:{address}", f"user:{username}"))

    def failed(self, address: str, username: str) -> None:
        """Count a failed attempt."""
        now = time.monotonic()
        for key in (f"ip:{address}", f"user:{username}"):
            self._recent(key).append(now)

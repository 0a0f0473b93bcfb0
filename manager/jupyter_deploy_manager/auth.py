"""Users, password hashes and scoped bearer tokens."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import ipaddress
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, Union

from .errors import ApiError
from .store import Store, TokenRecord, User

SCOPES = ("admin", "deploy", "invoke")
ROLES = ("admin", "deployer", "viewer")
TOKEN_PREFIX = "jdt_"
USERNAME_RE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
"""What a new user name must be (whole string): short, lowercase, safe in paths and shells."""
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
"""Longest password taken: each one is hashed, so its input stays bounded."""
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}

PASSWORD_THREADS = max(1, (os.cpu_count() or 2) // 2)
"""Threads hashing passwords (scrypt: tens of ms of CPU and 16 MiB each), never the event loop; at most half
the cores, so a flood of logins leaves the proxy a core of its own."""

DEFAULT_LOGIN_TOKEN_LIFETIME = 30 * 24 * 3600.0
"""Seconds a token from ``/api/login`` stays valid (``ManagerApp.login_token_lifetime``)."""

DEFAULT_TOKEN_CLEANUP_INTERVAL = 3600.0
"""Seconds between two removals of expired tokens from the database (``ManagerApp.token_cleanup_interval``)."""

MIN_TOKEN_CLEANUP_INTERVAL = 1.0
"""Shortest interval between two removals of expired tokens, in seconds, whatever is configured."""

LOGIN_FREE_FAILURES = 10
"""Failed logins of one user from one address before every further try has to wait."""

LOGIN_ADDRESS_FREE_FAILURES = 100
"""Failed logins from one address, whatever the user names, before every further try from it has to wait."""

LOGIN_BACKOFF = 5.0
"""Seconds of the first wait after the free failures; each further failure doubles it."""

LOGIN_BACKOFF_MAX = 900.0
"""Longest wait between two tries, in seconds."""

LOGIN_FORGET_AFTER = 3600.0
"""Seconds without a failure after which a user and address start afresh."""

LOGIN_LIMITER_KEYS = 10_000
"""(user, address) pairs and addresses the limiter remembers; the longest without a failure go first."""

T = TypeVar("T")
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


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

    def __init__(self, store: Store, cache_seconds: float = 10.0,
                 login_token_lifetime: float = DEFAULT_LOGIN_TOKEN_LIFETIME, limiter: LoginLimiter | None = None):
        self.store = store
        self.cache_seconds = cache_seconds
        self.login_token_lifetime = login_token_lifetime
        self.limiter = limiter or LoginLimiter()
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._hashing = ThreadPoolExecutor(PASSWORD_THREADS, thread_name_prefix="password")

    async def hashing(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` (anything that hashes a password: login, add_user, set_password) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._hashing, functools.partial(fn, *args))

    def close(self) -> None:
        """Stop the password threads."""
        self._hashing.shutdown(wait=False, cancel_futures=True)

    def purge_expired(self) -> int:
        """Remove expired tokens from the database; return how many went."""
        return self.store.delete_expired_tokens(time.time())

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

    def login(self, username: str, password: str, address: str = "") -> tuple[str, TokenRecord]:
        """Check a password and issue an expiring token matching the user's role; 401 if wrong, 429 while waiting.

        Blocking (scrypt): call it through ``hashing``. The limiter is asked here, in the password threads, so
        attempts queued at once are judged one after the other, each knowing the failures before it.
        """
        wait = self.limiter.wait(address, username)
        if wait > 0:
            raise ApiError(429, f"too many failed logins of {username!r} from this address; try again in "
                                f"{math.ceil(wait)} s", "rate-limited", headers={"Retry-After": str(math.ceil(wait))})
        user = self.store.get_user(username)
        if user is None:
            # Spend the same time as a real check so user names cannot be probed.
            check_password(password, hash_password("x"))
            ok = False
        else:
            ok = check_password(password, user.password_hash)
        if not ok or user is None:
            self.limiter.failed(address, username)
            raise ApiError(401, "wrong username or password", "bad-credentials")
        self.limiter.succeeded(address, username)
        scope = "admin" if user.role == "admin" else "deploy"
        return self.issue(username, scope, None, self.login_token_lifetime or None, note="login")

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


@dataclass
class _Failures:
    count: int
    last: float


class LoginLimiter:
    """Makes failed logins wait, per user and address, with a backoff, in bounded memory.

    Keyed by (user, address), so failures from one address never keep a user out who logs in from another;
    and by address alone with a larger allowance, for one address trying many user names. After the free
    failures each try waits ``backoff`` seconds after the last failure, doubled at every further failure up
    to ``backoff_max``; a success clears the pair. Thread-safe: logins are checked in the password threads.
    """

    def __init__(self, free: int = LOGIN_FREE_FAILURES, address_free: int = LOGIN_ADDRESS_FREE_FAILURES,
                 backoff: float = LOGIN_BACKOFF, backoff_max: float = LOGIN_BACKOFF_MAX,
                 forget_after: float = LOGIN_FORGET_AFTER, max_keys: int = LOGIN_LIMITER_KEYS):
        self.free = free
        self.address_free = address_free
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.forget_after = forget_after
        self.max_keys = max_keys
        self._failures: OrderedDict[tuple[str, ...], _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def _keys(self, address: str, username: str) -> tuple[tuple[tuple[str, ...], int], ...]:
        return ((("user", username, address), self.free), (("address", address), self.address_free))

    def __len__(self) -> int:
        return len(self._failures)

    def wait(self, address: str, username: str) -> float:
        """Seconds before ``username`` may try again from ``address``; 0 for now."""
        now = time.monotonic()
        longest = 0.0
        with self._lock:
            for key, free in self._keys(address, username):
                failures = self._failures.get(key)
                if failures is None:
                    continue
                if now - failures.last > self.forget_after:
                    del self._failures[key]
                    continue
                if failures.count >= free:
                    # Capped exponent: the wait is capped anyway, and 2**n must stay a float.
                    delay = min(self.backoff_max, self.backoff * 2 ** min(failures.count - free, 30))
                    longest = max(longest, failures.last + delay - now)
        return max(0.0, longest)

    def failed(self, address: str, username: str) -> None:
        """Count a failed attempt."""
        now = time.monotonic()
        with self._lock:
            for key, _ in self._keys(address, username):
                failures = self._failures.pop(key, None) or _Failures(0, now)
                failures.count += 1
                failures.last = now
                self._failures[key] = failures  # at the end: the most recently failed are forgotten last
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, address: str, username: str) -> None:
        """The right password: that user starts afresh from that address."""
        with self._lock:
            self._failures.pop(self._keys(address, username)[0][0], None)


def trusted_networks(entries: Sequence[str]) -> list[Network]:
    """Parse addresses and CIDR networks of trusted proxies; ValueError naming a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is no IP address or network: {exc}") from exc
    return networks


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _key_of(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    # One IPv6 host usually holds a whole /64: counted per address, it would get 2**64 fresh allowances.
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def client_address(remote_ip: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The address a login comes from, as the limiter counts it.

    The peer's, unless the peer is a trusted proxy: then the last address in ``X-Forwarded-For`` that is not
    a trusted proxy itself (what a client writes there is to the left of what the proxies appended). IPv6
    addresses count by their /64.
    """
    peer = _parse_ip(remote_ip)
    if peer is None:
        return remote_ip
    if not forwarded_for or not any(peer in net for net in trusted):
        return _key_of(peer)
    hop = peer
    for entry in reversed(forwarded_for.split(",")):
        parsed = _parse_ip(entry)
        if parsed is None:
            # Unreadable, yet written by a trusted proxy: the client's own text, counted as it is.
            return entry.strip()[:100]
        hop = parsed
        if not any(hop in net for net in trusted):
            break
    return _key_of(hop)

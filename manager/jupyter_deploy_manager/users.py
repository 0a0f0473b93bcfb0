"""User management handlers: list, create and delete users (admins), change a password (admins or oneself)."""

from __future__ import annotations

from .errors import ApiError
from .handlers import BaseHandler


class UsersHandler(BaseHandler):
    """``GET`` / ``POST /api/users``."""

    def get(self) -> None:
        """List users with their roles, never their password hashes."""
        self.need_admin("list users")
        self.send({"users": [u.public() for u in self.auth.users()]})

    async def post(self) -> None:
        """Create a user ``{"username", "password", "role"}`` (role defaults to deployer)."""
        self.need_admin("create users")
        body = self.json_body()
        user = await self.auth.hashing(self.auth.add_user, body.get("username"), body.get("password"),
                                       body.get("role", "deployer"))
        self.send(user.public(), status=201)


class UserHandler(BaseHandler):
    """``DELETE /api/users/{username}``."""

    def delete(self, username: str) -> None:
        """Delete a user and revoke every token they hold, at once."""
        p = self.need_admin("delete users")
        self.auth.delete_user(username, caller=p.username)
        self.send({"deleted": username})


class PasswordHandler(BaseHandler):
    """``POST /api/users/{username}/password``."""

    async def post(self, username: str) -> None:
        """Set a new password ``{"password"}``; admins for anyone, every user for themself."""
        p = self.principal()
        if not p.may_set_password(username):
            if p.username == username:
                raise ApiError(
                    403, f"a token of scope {p.scope!r} cannot change a password; log in for one", "forbidden"
                )
            raise ApiError(
                403,
                f"user {p.username!r} (role {p.role!r}, token scope {p.scope!r}) cannot change another user's "
                "password; that takes an admin-scope token of an admin",
                "forbidden",
            )
        await self.auth.hashing(self.auth.set_password, username, self.json_body().get("password"))
        self.send({"password_changed": username})

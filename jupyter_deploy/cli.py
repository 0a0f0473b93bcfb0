"""The ``jupyter-deploy`` command: login, ls, logs, rm, token against a manager."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import __version__, config
from .client import ManagerClient, login
from .errors import DeployError


def _client(args: argparse.Namespace) -> ManagerClient:
    return ManagerClient(getattr(args, "url", None), getattr(args, "token", None))


def cmd_login(args: argparse.Namespace) -> int:
    """Log in and store a token."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass(f"Password for {args.username} at {args.url}: ")
    info = login(args.url, args.username, password)
    print(f"Logged in to {info['url']} as {info['username']} (scope {info['scope']}); token stored in {info['config']}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    """Forget the stored token."""
    print("Logged out." if config.clear() else "Not logged in.")
    return 0


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def cmd_ls(args: argparse.Namespace) -> int:
    """List services."""
    client = _client(args)
    services = client.services()
    if not services:
        print("No services deployed yet.")
        return 0
    rows = [
        [s["name"], s.get("main_version") or "-", s["status"], str(s["versions"]), ", ".join(s.get("entrypoints", []))]
        for s in services
    ]
    print(_table(rows, ["NAME", "MAIN", "STATUS", "VERSIONS", "ENTRYPOINTS"]))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """Print a service's log tail."""
    sys.stdout.write(_client(args).logs(args.name, tail=args.n, version=args.version))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """Remove a service."""
    if not args.yes and sys.stdin.isatty():
        answer = input(f"Remove service {args.name} and all its versions? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Kept.")
            return 1
    _client(args).delete(args.name, keep_images=args.keep_images)
    print(f"Removed {args.name}.")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Create a new invoke token for a service (or a deploy token without a name)."""
    expires = args.expires * 86400 if args.expires else None
    answer = _client(args).create_token(service=args.name, expires_in=expires)
    if not sys.stdout.isatty():
        # Scripts capture the token alone.
        print(answer["token"])
        return 0
    what = f"invoke {args.name}" if args.name else "deploy"
    until = f", expires {answer['expires_at']}" if answer.get("expires_at") else ""
    print(f"New {what} token (id {answer['id']}{until}):\n{answer['token']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jupyter-deploy``."""
    parser = argparse.ArgumentParser(prog="jupyter-deploy", description="Deploy notebook models; manage deployments.")
    parser.add_argument("--version", action="version", version=f"jupyter-deploy {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="manager URL (default: JUPYTER_DEPLOY_URL or the stored login)")
    common.add_argument("--token", default=None, help="token (default: JUPYTER_DEPLOY_TOKEN or the stored login)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("login", help="log in to a manager and store a token")
    p.add_argument("url", metavar="URL")
    p.add_argument("--username", "-u", default="admin")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="forget the stored token")
    p.set_defaults(func=cmd_logout)

    p = sub.add_parser("ls", parents=[common], help="list services")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("logs", parents=[common], help="show a service's log")
    p.add_argument("name")
    p.add_argument("-n", type=int, default=200, help="number of lines (default 200)")
    p.add_argument("--version", dest="version", default=None, help="a version other than main")
    p.set_defaults(func=cmd_logs)

    for alias in ("rm", "kill"):
        p = sub.add_parser(alias, parents=[common], help="remove a service and its versions")
        p.add_argument("name")
        p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        p.add_argument("--keep-images", action="store_true", help="keep the built images")
        p.set_defaults(func=cmd_rm)

    p = sub.add_parser("token", parents=[common], help="create a token (invoke NAME, or deploy without NAME)")
    p.add_argument("name", nargs="?", default=None)
    p.add_argument("--expires", type=float, default=None, metavar="DAYS", help="expire after DAYS days")
    p.set_defaults(func=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jupyter-deploy``."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DeployError as exc:
        print(f"jupyter-deploy: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _entry() -> Any:
    sys.exit(main())


if __name__ == "__main__":
    _entry()

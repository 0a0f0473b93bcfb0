"""The ``jupyter-deploy`` command: login, deploy a folder, ls, logs, rm, token, versions, secrets and users."""

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
    """Print a service's log tail, and with -f the new lines as they come (until Ctrl-C)."""
    client = _client(args)
    if not args.follow:
        sys.stdout.write(client.logs(args.name, tail=args.n, version=args.version))
        return 0
    for line in client.follow_logs(args.name, tail=args.n, version=args.version):
        print(line, flush=True)
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


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy a service folder (service.py, requirements.txt) as NAME VERSION."""
    from .deployment import deploy_bundle, parse_env, reporting
    from .folder import bundle_folder
    from .progress import Progress

    # Progress goes to stderr, so stdout keeps only the summary.
    progress = Progress(args.name, rich=False, stream=sys.stderr)
    client = _client(args)
    try:
        with reporting(progress):
            progress.phase("capture", f"collecting the entrypoints of {args.path}")
            bundle = bundle_folder(args.path, args.name, args.version, env=parse_env(args.env, "--env"),
                                   secrets=args.secret)
        deployment = deploy_bundle(bundle, client=client, progress=progress)
    except DeployError:
        if progress.failed is None:
            raise
        # The progress lines already end with the failure: saying it twice adds nothing.
        return 1
    finally:
        client.close()
    print(f"Deployed {deployment.name} {deployment.version}: {deployment.status}")
    for entry in deployment.entrypoints:
        print(f"  POST {deployment.endpoint(entry['name'])}")
    print(f"  docs:  {deployment.url}/docs")
    for line in deployment.smoke_lines():
        print(f"  smoke test: {line}")
    print(f"  token: {deployment.token}")
    return 0


def cmd_secret_set(args: argparse.Namespace) -> int:
    """Set a secret from standard input (piped) or a prompt; never from the command line."""
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"Value of secret {args.name} (not shown): ")
    else:
        value = sys.stdin.read()
        # One trailing newline is the pipe's (echo, a file), not the secret's.
        value = value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value
    if not value:
        print("jupyter-deploy: the value is empty; nothing set", file=sys.stderr)
        return 1
    answer = _client(args).set_secret(args.name, value)
    print(f"Secret {args.name} {'changed' if answer.get('replaced') else 'set'}.")
    for moved in answer.get("restarted") or []:
        print(f"  restarted {moved['service']} {moved['version']} with it (no call failed)")
    for failed in answer.get("failed") or []:
        print(f"  {failed['service']} {failed['version']} kept its old runner: {failed.get('error')}", file=sys.stderr)
    return 1 if answer.get("failed") else 0


def cmd_secret_ls(args: argparse.Namespace) -> int:
    """List secrets: names, when they changed, who uses them (never values)."""
    secrets = _client(args).secrets()
    if not secrets:
        print("No secrets set.")
        return 0
    rows = [[s["name"], s.get("updated") or "-", s.get("updated_by") or "-", ", ".join(s.get("used_by") or []) or "-"]
            for s in secrets]
    print(_table(rows, ["NAME", "UPDATED", "BY", "USED BY"]))
    return 0


def cmd_secret_rm(args: argparse.Namespace) -> int:
    """Remove a secret."""
    answer = _client(args).delete_secret(args.name, force=args.force)
    users = answer.get("used_by") or []
    print(f"Removed secret {args.name}." + (f" {', '.join(users)} cannot start until it is set again." if users else ""))
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    """Make VERSION the main version of NAME."""
    answer = _client(args).promote(args.name, args.version)
    print(f"{args.name}: main version is now {_main_version(answer, args.version)}.")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Make the previous main version of NAME main again."""
    answer = _client(args).rollback(args.name)
    print(f"{args.name}: rolled back; main version is now {_main_version(answer, '?')}.")
    return 0


def _main_version(answer: Any, default: str) -> str:
    if isinstance(answer, dict):
        for key in ("main_version", "main", "version"):
            if isinstance(answer.get(key), str):
                return answer[key]
    return default


def cmd_user_ls(args: argparse.Namespace) -> int:
    """List the manager's users."""
    users = _client(args).users()
    print(_table([[u.get("username", ""), u.get("role", "")] for u in users], ["USERNAME", "ROLE"]))
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    """Add a user with a role."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass(f"Password for the new user {args.username}: ")
        if getpass.getpass("Again: ") != password:
            print("jupyter-deploy: the passwords differ", file=sys.stderr)
            return 1
    if not password:
        print("jupyter-deploy: the password is empty", file=sys.stderr)
        return 1
    answer = _client(args).add_user(args.username, password, args.role)
    role = answer.get("role", args.role) if isinstance(answer, dict) else args.role
    print(f"Added user {args.username} ({role}).")
    return 0


def cmd_user_rm(args: argparse.Namespace) -> int:
    """Remove a user."""
    _client(args).remove_user(args.username)
    print(f"Removed user {args.username}.")
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
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines as they come")
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

    p = sub.add_parser("deploy", parents=[common], help="deploy a service folder (service.py, requirements.txt)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("path", metavar="PATH", help="the folder holding service.py")
    p.add_argument("--secret", action="append", default=None, metavar="NAME",
                   help="a secret set on the manager, given to the service as the variable NAME (repeatable)")
    p.add_argument("--env", "-e", action="append", default=None, metavar="KEY=VALUE",
                   help="a plain environment variable of the service (repeatable); never for secret values")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("secret", help="manage the secrets services get as environment variables")
    secrets = p.add_subparsers(dest="secret_command", metavar="SECRET_COMMAND")
    secrets.required = True
    q = secrets.add_parser("set", parents=[common], help="set a secret: the value from standard input or a prompt")
    q.add_argument("name", metavar="NAME")
    q.set_defaults(func=cmd_secret_set)
    q = secrets.add_parser("ls", parents=[common], help="list secrets (names only)")
    q.set_defaults(func=cmd_secret_ls)
    q = secrets.add_parser("rm", parents=[common], help="remove a secret")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--force", action="store_true", help="remove it even while versions use it")
    q.set_defaults(func=cmd_secret_rm)

    p = sub.add_parser("assign", parents=[common], help="make VERSION the main version of NAME")
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(func=cmd_assign)

    p = sub.add_parser("rollback", parents=[common], help="make the previous main version of NAME main again")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("user", help="manage the manager's users (admin)")
    users = p.add_subparsers(dest="user_command", metavar="USER_COMMAND")
    users.required = True
    q = users.add_parser("ls", parents=[common], help="list users")
    q.set_defaults(func=cmd_user_ls)
    q = users.add_parser("add", parents=[common], help="add a user")
    q.add_argument("username", metavar="USERNAME")
    q.add_argument("--role", choices=("admin", "deployer", "viewer"), default="deployer", help="(default deployer, as the manager)")
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    q.set_defaults(func=cmd_user_add)
    q = users.add_parser("rm", parents=[common], help="remove a user")
    q.add_argument("username", metavar="USERNAME")
    q.set_defaults(func=cmd_user_rm)
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

"""The ``%%deploy`` cell magic."""

from __future__ import annotations

import ast
from typing import Any

from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .deployment import parse_env
from .errors import CaptureError


def public_functions(cell: str) -> list[str]:
    """Names of the functions a cell defines at top level, without a leading underscore, in order."""
    tree = ast.parse(cell)
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            if node.name not in names:
                names.append(node.name)
    return names


@magics_class
class DeployMagics(Magics):
    """``%%deploy NAME``: run the cell, then deploy its public functions as entrypoints."""

    @magic_arguments()
    @argument("name", help="service name (lowercase letters, digits, dashes)")
    @argument("--version", "-v", default=None, help="version (default: the next patch version)")
    @argument("--sample", "-s", default=None, help="variable holding sample input (e.g. X_test)")
    @argument("--requirements", "-r", nargs="+", default=None, help="extra or overriding requirements")
    @argument("--monitor", "-m", nargs="*", default=None,
              help="keep the calls of these entrypoints (all of them when no name is given)")
    @argument("--secret", action="append", default=None, metavar="NAME",
              help="a secret set on the manager, given to the service as the variable NAME (repeatable)")
    @argument("--env", "-e", action="append", default=None, metavar="KEY=VALUE",
              help="a plain environment variable of the service (repeatable); never for secret values")
    @argument("--url", default=None, help="manager URL (default: the stored login)")
    @cell_magic
    def deploy(self, line: str, cell: str) -> Any:
        """Define the cell's functions in the notebook, then deploy them; returns a Deployment."""
        from .deployment import deploy

        args = parse_argstring(self.deploy, line)
        names = public_functions(cell)
        if not names:
            raise CaptureError("%%deploy: the cell defines no public function to serve (names starting with _ are private)")
        # Run the cell first so the functions exist, like any other cell. Compiled under a name IPython keeps
        # the source of (as for any cell), so a traceback from the service shows the cell's own lines.
        filename = self.shell.compile.cache(cell, self.shell.execution_count, raw_code=cell)
        code = self.shell.compile(cell, filename, "exec")
        exec(code, self.shell.user_global_ns, self.shell.user_ns)  # noqa: S102 - the user's own cell
        namespace = self.shell.user_ns
        sample = None
        if args.sample:
            if args.sample not in namespace:
                raise CaptureError(f"%%deploy: --sample {args.sample}: no variable of that name in the notebook")
            sample = namespace[args.sample]
        requirements = [r.strip("'\"") for r in (args.requirements or [])]
        return deploy(
            args.name,
            {n: namespace[n] for n in names},
            version=args.version,
            sample=sample,
            requirements=requirements,
            monitor=True if args.monitor == [] else (args.monitor or False),
            secrets=args.secret,
            env=parse_env(args.env, "%%deploy --env"),
            url=args.url,
        )

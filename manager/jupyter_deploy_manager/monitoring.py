"""Reading back the calls of monitored entrypoints, as JSON or CSV."""

from __future__ import annotations

import csv
import io

from .errors import ApiError
from .handlers import BaseHandler

COLUMNS = ("time", "version", "entrypoint", "status", "latency_ms", "request", "response")


class MonitorHandler(BaseHandler):
    """``GET /api/services/{name}/monitor``: what a monitored service was asked and answered."""

    def get(self, name: str) -> None:
        """The newest ``limit`` calls, oldest first; ``format=csv`` for a spreadsheet."""
        self.need_view()
        self.deployments.version_record(name)
        limit = self.int_argument("limit", 1000)
        if not 1 <= limit <= 100_000:
            raise ApiError(422, "limit must be between 1 and 100000", "invalid-input")
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise ApiError(422, "format must be json or csv", "invalid-input")
        rows = self.deployments.store.list_predictions(
            name, self.get_query_argument("entrypoint", None), self.get_query_argument("version", None), limit
        )
        records = [{c: row[c] for c in COLUMNS} for row in rows]
        if fmt == "json":
            self.send({"records": records})
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(records)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{name}-monitor.csv"')
        self.finish(out.getvalue())


class UsageHandler(BaseHandler):
    """``GET /api/services/{name}/usage``: memory and CPU time of its running versions."""

    async def get(self, name: str) -> None:
        """One entry per running version; null where the runtime cannot tell."""
        self.need_view()
        self.send({"usage": await self.deployments.usage(name)})

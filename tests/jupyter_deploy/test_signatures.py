"""Signatures: entrypoint descriptions, annotation rendering and parameter types, as captured."""

from __future__ import annotations

from jupyter_deploy.capture import capture

from .capturing import notebook


def test_future_annotations_are_resolved() -> None:
    ns = notebook(
        """
        from __future__ import annotations

        import typing
        from typing import Dict, List, Optional

        import numpy as np
        import pandas as pd

        def score(
            frame: pd.DataFrame,
            column: pd.Series,
            matrix: np.ndarray,
            count: int = 3,
            ratio: float = 0.5,
            label: str = "x",
            flag: bool = False,
            items: List[int] | None = None,
            table: dict[str, float] | None = None,
            legacy: typing.Dict[str, int] = None,
            maybe: Optional[int] = None,
            unknown: NotDefinedAnywhere = None,
            anything=object(),
            *,
            strict: bool = True,
        ) -> Dict[str, list]:
            '''Score things.'''
            return {}
        """
    )
    [entry] = capture([ns["score"]], name="types").manifest["entrypoints"]
    params = {p["name"]: p for p in entry["parameters"]}
    types = {name: p["type"] for name, p in params.items()}
    assert types == {
        "frame": "dataframe",
        "column": "series",
        "matrix": "ndarray",
        "count": "int",
        "ratio": "float",
        "label": "str",
        "flag": "bool",
        "items": "list",
        "table": "dict",
        "legacy": "dict",
        "maybe": "int",
        "unknown": "any",
        "anything": "any",
        "strict": "bool",
    }
    assert params["count"]["default"] == 3 and params["count"]["required"] is False
    assert params["items"]["default"] is None
    assert "default" not in params["anything"] and params["anything"]["required"] is False
    assert "annotation" in params["anything"] and params["anything"]["annotation"] is None
    assert params["strict"]["kind"] == "KEYWORD_ONLY"
    assert params["matrix"]["annotation"] == "numpy.ndarray"
    assert params["unknown"]["annotation"] == "NotDefinedAnywhere"
    assert params["items"]["annotation"] == "typing.List[int] | None"
    assert entry["returns"] == "typing.Dict[str, list]"
    assert entry["signature"].startswith("(frame: pandas.DataFrame, column: pandas.Series, matrix: numpy.ndarray, count: int = 3,")
    assert "unknown: NotDefinedAnywhere = None" in entry["signature"]
    assert entry["signature"].endswith("*, strict: bool = True) -> typing.Dict[str, list]")
    assert entry["doc"] == "Score things."


def test_string_annotations_that_cannot_be_evaluated_are_read_textually() -> None:
    ns = notebook(
        """
        def f(a: "pd.DataFrame", b: "Optional[np.ndarray]", c: "list[int]", d: "Mystery") -> "pd.Series":
            return a
        """
    )
    [entry] = capture([ns["f"]], name="text").manifest["entrypoints"]
    assert [p["type"] for p in entry["parameters"]] == ["dataframe", "ndarray", "list", "any"]
    assert entry["signature"] == "(a: pd.DataFrame, b: Optional[np.ndarray], c: list[int], d: Mystery) -> pd.Series"

"""OpenAPI documents of services, from manifests captured from real functions and samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from jupyter_deploy.capture import capture
from jupyter_deploy_manager.openapi import service_document

IRIS = load_iris(as_frame=True)


def document(functions, sample=None):
    """Capture functions like a notebook would and build their document."""
    bundle = capture(functions, name="svc", sample=sample)
    return service_document("svc", "0.1.0", bundle.manifest, "http://manager/services/svc")


def body_schema(doc, entrypoint):
    """The request body schema of an entrypoint."""
    return doc["paths"][f"/{entrypoint}"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def example(doc, entrypoint):
    """The request body example of an entrypoint."""
    return doc["paths"][f"/{entrypoint}"]["post"]["requestBody"]["content"]["application/json"]["example"]


def score(frame: pd.DataFrame) -> list:
    """Score rows."""
    return [0] * len(frame)


def test_dataframe_parameter_gets_columns_dtypes_categories_and_required_from_the_sample():
    sample = pd.DataFrame({
        "age": [31, 45, 27, 60, 38, 52],
        "income": [1200.5, None, 800.0, 2500.0, 990.0, 1700.0],
        "city": ["Lund", "Oslo", "Lund", "Rome", "Oslo", "Lund"],
        "plan": pd.Categorical(["a", "b", "a", "c", "a", "b"]),
        "member": [True, False, True, True, False, True],
        "since": pd.to_datetime(["2020-01-01", "2021-02-03", "2019-05-06", "2018-01-01", "2022-03-04", "2020-06-07"]),
    })
    doc = document([score], sample=sample)
    assert doc["openapi"].startswith("3.1")
    frame = body_schema(doc, "score")["properties"]["frame"]
    records = next(s for s in frame["anyOf"] if s.get("title") == "records")
    row = records["items"]
    assert row["required"] == list(sample.columns) and row["additionalProperties"] is False
    props = row["properties"]
    assert props["age"]["type"] == "integer"
    assert props["income"]["type"] == ["number", "null"]
    assert props["city"]["type"] == "string" and set(props["city"]["examples"]) == {"Lund", "Oslo", "Rome"}
    assert set(props["plan"]["enum"]) == {"a", "b", "c"}
    assert props["member"]["type"] == "boolean"
    assert props["since"]["format"] == "date-time"
    # The forms the service accepts are all described.
    assert {s.get("title") for s in frame["anyOf"]} == {"records", "columns", "split"}
    # "Try it out" is prefilled with rows of the sample.
    rows = example(doc, "score")["frame"]
    assert rows and set(rows[0]) == set(sample.columns)


def test_responses_describe_every_error_body():
    doc = document([score], sample=IRIS.data.head())
    responses = doc["paths"]["/score"]["post"]["responses"]
    for code in ("200", "400", "401", "403", "404", "422", "500"):
        assert code in responses
    assert responses["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["message", "reason"] and "errors" in error["properties"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def embed(x: np.ndarray, scale: float = 1.0, label: str = "a", flag: bool = False, tags: list = None,  # noqa: RUF013
          opts: dict = None, n: int = 3) -> list:  # noqa: RUF013
    """Embed an array."""
    return (x * scale).tolist()


def test_ndarray_and_scalar_parameters():
    sample = np.zeros((10, 3, 2), dtype="float32")
    doc = document([embed], sample=sample)
    props = body_schema(doc, "embed")["properties"]
    x = props["x"]
    assert x["type"] == "array"
    assert x["items"]["minItems"] == 3 and x["items"]["maxItems"] == 3
    assert x["items"]["items"]["minItems"] == 2 and x["items"]["items"]["items"] == {"type": "number"}
    assert "float32" in x["description"]
    assert props["scale"] == {"type": "number", "default": 1.0, "description": "(annotation: float)"}
    assert props["label"]["type"] == "string" and props["label"]["default"] == "a"
    assert props["flag"]["type"] == "boolean"
    assert props["tags"]["type"] == "array"
    assert props["opts"]["type"] == "object"
    assert props["n"]["type"] == "integer" and props["n"]["default"] == 3
    assert body_schema(doc, "embed")["required"] == ["x"]
    assert len(example(doc, "embed")["x"]) == 3


def test_without_a_sample_the_models_feature_names_give_the_columns():
    model = LogisticRegression(max_iter=300).fit(IRIS.data, IRIS.target)

    def classify(data: pd.DataFrame) -> list:
        """Classify rows."""
        return model.predict(data).tolist()

    doc = document([classify])
    frame = body_schema(doc, "classify")["properties"]["data"]
    records = next(s for s in frame["anyOf"] if s.get("title") == "records")
    assert records["items"]["required"] == list(IRIS.data.columns)
    assert set(example(doc, "classify")["data"][0]) == set(IRIS.data.columns)


def test_without_a_sample_or_names_the_feature_count_shapes_arrays():
    model = LogisticRegression(max_iter=300).fit(IRIS.data.to_numpy(), IRIS.target)

    def classify(x: np.ndarray) -> list:
        """Classify rows."""
        return model.predict(x).tolist()

    doc = document([classify])
    x = body_schema(doc, "classify")["properties"]["x"]
    assert x["items"]["minItems"] == 4 and x["items"]["maxItems"] == 4


def test_docstring_signature_and_return_type_are_shown():
    doc = document([score], sample=IRIS.data.head())
    op = doc["paths"]["/score"]["post"]
    assert op["summary"] == "Score rows."
    assert "score(frame: pandas.DataFrame) -> list" in op["description"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert doc["servers"] == [{"url": "http://manager/services/svc"}]

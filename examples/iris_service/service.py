"""Iris prediction service: a folder deployed with `jupyter-deploy deploy iris-service 1.0.0 examples/iris_service`."""

import pickle
from pathlib import Path

import pandas as pd

from jupyter_deploy import service

# A stdlib logging.Logger (logging.getLogger("service")); its lines show in `jupyter-deploy logs`.
logger = service.logger

MODEL_PATH = Path(__file__).parent / "models" / "classifier.pkl"
with open(MODEL_PATH, "rb") as fh:
    model = pickle.load(fh)


@service.entrypoint
def predict(data: pd.DataFrame) -> list:
    """Predict the iris species of each row (sepal/petal length and width in cm)."""
    prediction = model.predict(data).tolist()
    logger.info("predict: %d rows -> %s", len(data), prediction)
    return prediction


if __name__ == "__main__":
    service.run()

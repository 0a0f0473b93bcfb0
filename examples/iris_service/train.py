"""(Re)create models/classifier.pkl: a small random forest fitted on scikit-learn's bundled iris data."""

from __future__ import annotations

import pickle
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

MODEL_PATH = Path(__file__).parent / "models" / "classifier.pkl"


def train() -> RandomForestClassifier:
    """Fit the classifier on all 150 iris rows; it predicts species names from the four measurements."""
    iris = load_iris(as_frame=True)
    species = iris.target_names[iris.target]
    # Few shallow trees keep the pickle small enough to commit; iris needs no more.
    classifier = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
    return classifier.fit(iris.data, species)


def main() -> None:
    """Train and write the pickle next to service.py."""
    classifier = train()
    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(MODEL_PATH, "wb") as fh:
        pickle.dump(classifier, fh)
    print(f"wrote {MODEL_PATH} ({MODEL_PATH.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

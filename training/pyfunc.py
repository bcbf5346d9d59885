"""The registered MLflow pyfunc: the rows `vafa features` writes in, churn, spend and CLV out.

Its signature takes categorical features as any type (pandas categoricals, as `vafa features`
writes them to Parquet, or plain strings); it refuses feature rows without the inputs every
feature row has, naming them, instead of scoring a bare customer id as an average customer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema, TensorSpec
from mlflow.types.schema import AnyType

from features.build import build_features
from features.schema import ID, TRANSACTIONS, Tables
from training.datasets import FeatureSpec
from training.model import ModelBundle

BUNDLE_ARTIFACT = "bundle"
# Rows named in an error message, at most.
SHOWN_ROWS = 10


class MissingInputsError(ValueError):
    """Feature rows lack inputs the model requires; the message names the columns and rows."""


@lru_cache(maxsize=1)
def always_built() -> frozenset[str]:
    """The features of every feature row: those built from the required transaction columns.

    The transactions table is the one required table and these columns its required ones, so
    `build_features` gives these columns for any data folder; the others come from optional
    columns and tables and may be absent.
    """
    values: dict[str, Any] = {"id": ["c"], "timestamp": [pd.Timestamp("2000-01-01")]}
    one_row = pd.DataFrame(
        {c.name: values.get(c.kind, [1.0]) for c in TRANSACTIONS.columns if c.required}
    )
    one_row["ts"] = one_row["ts"].astype("datetime64[us]")
    built = build_features(Tables(transactions=one_row), pd.Timestamp("2000-01-02"))
    return frozenset(built.columns) - {ID}


def required_inputs(spec: FeatureSpec) -> list[str]:
    """The model's inputs every feature row has (see `always_built`), in the spec's order."""
    built = always_built()
    return [c for c in spec.columns if c in built]


def check_inputs(features: pd.DataFrame, required: list[str]) -> None:
    """Refuse feature rows the model cannot score.

    Raises:
        MissingInputsError: the customer id or a required input column is absent, or rows
            hold no value in any required input (a row with only an id).
    """
    absent = [c for c in (ID, *required) if c not in features.columns]
    if absent:
        raise MissingInputsError(
            f"the feature rows lack {len(absent)} column(s) the model requires: "
            f"{', '.join(absent)} (every row `vafa features` writes has them)"
        )
    empty = features[required].isna().all(axis=1).to_numpy()
    if empty.any():
        rows = [str(i) for i in empty.nonzero()[0][:SHOWN_ROWS]]
        more = f" and {int(empty.sum()) - len(rows)} more" if empty.sum() > len(rows) else ""
        raise MissingInputsError(
            f"{int(empty.sum())} feature row(s) hold no value in any required input "
            f"({', '.join(required[:5])}, ...): rows {', '.join(rows)}{more} (0-based)"
        )


class VafaModel(PythonModel):
    """The registered pyfunc: feature rows in, churn probability, spend and CLV out."""

    def load_context(self, context: Any) -> None:
        """Load the bundle files logged beside the model."""
        self.bundle = ModelBundle.load(Path(context.artifacts[BUNDLE_ARTIFACT]))
        self.required = required_inputs(self.bundle.spec)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Score feature rows as `vafa features` writes them (`features.build.build_features`).

        Raises:
            MissingInputsError: see `check_inputs`.
        """
        check_inputs(model_input, self.required)
        return self.bundle.predict(model_input)


def signature(bundle: ModelBundle, output: pd.DataFrame) -> ModelSignature:
    """Ids required; categoricals any type (categorical or text); numbers doubles.

    Every feature is optional *to the signature*: MLflow would name only the first missing
    column, so `check_inputs` refuses absent required inputs, naming them all.
    """
    inputs: list[ColSpec | TensorSpec] = [ColSpec("string", ID)]
    for column in bundle.spec.columns:
        kind = AnyType() if column in bundle.spec.categories else "double"
        inputs.append(ColSpec(kind, column, required=False))
    outputs: list[ColSpec | TensorSpec] = [
        ColSpec("string" if c == ID else "double", c) for c in output.columns
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def json_safe(example: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as plain strings: MLflow's example and signature handle those everywhere."""
    out = example.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype("str").where(out[column].notna(), None)
    return out

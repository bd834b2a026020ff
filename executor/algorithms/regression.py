"""Regression over a cohort: coefficients and fit statistics, never residuals or rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flowblock.executor.algorithms.base import Algorithm, AlgorithmError, check_columns
from flowblock.executor.algorithms.filters import WHERE_SCHEMA

_PARAMETERS = {
    "type": "object",
    "properties": {
        "outcome": {"type": "string", "minLength": 1, "description": "The column to explain."},
        "predictors": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                       "maxItems": 10, "description": "The explaining columns."},
        "where": WHERE_SCHEMA,
    },
    "required": ["outcome", "predictors"],
    "additionalProperties": False,
}  # fmt: skip


def _design(
    frame: pd.DataFrame, params: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    columns = [params["outcome"], *params["predictors"]]
    check_columns(frame, columns)
    data = frame[columns].dropna()
    predictors = pd.get_dummies(data[params["predictors"]], drop_first=True, dtype=float)
    names = ["intercept", *predictors.columns]
    if len(data) <= len(names):
        raise AlgorithmError("there are too few records for this many predictors.")
    x = np.column_stack([np.ones(len(data)), predictors.to_numpy(dtype=float)])
    return x, data[params["outcome"]].to_numpy(dtype=float), names


def _summary(fit, names: list[str], n: int) -> dict:
    return {
        "n": n,
        "degrees_of_freedom": int(fit.df_resid),
        "coefficients": {
            name: {"estimate": float(b), "std_error": float(se), "p_value": float(p)}
            for name, b, se, p in zip(names, fit.params, fit.bse, fit.pvalues, strict=True)
        },
    }


class LinearRegression(Algorithm):
    name = "linear-regression"
    description = "Ordinary least squares of an outcome on predictors: coefficients and R²."
    parameters = _PARAMETERS
    output_kind = "metrics"
    disclosure_class = "model"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        import statsmodels.api as sm

        x, y, names = _design(frame, params)
        fit = sm.OLS(y, x).fit()
        return {**_summary(fit, names, len(y)), "r_squared": float(fit.rsquared)}


class LogisticRegression(Algorithm):
    name = "logistic-regression"
    description = "Logistic regression of a yes/no outcome on predictors: coefficients."
    parameters = _PARAMETERS
    output_kind = "metrics"
    disclosure_class, sdc_analysis = "model", "BinaryLogisticRegression"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        import statsmodels.api as sm

        x, y, names = _design(frame, params)
        if set(np.unique(y)) - {0.0, 1.0}:
            raise AlgorithmError("the outcome must be yes/no (true/false or 0/1).")
        try:
            fit = sm.Logit(y, x).fit(disp=False)
        except Exception as error:  # perfect separation, singular matrix
            raise AlgorithmError(
                f"the model could not be fitted ({type(error).__name__})."
            ) from None
        return {**_summary(fit, names, len(y)), "pseudo_r_squared": float(fit.prsquared)}

"""What a fitted model may say about the categories it was fitted on.

A regression's coefficient for a category level held by one patient is that patient's
outcome less the intercept: the model names them. So the coefficient of a level (or of
a yes/no predictor's "yes") held by fewer than the threshold's patients is withheld,
and so is the intercept when the baseline level (the one left out) is that rare. The
record count and degrees of freedom are rounded like every released count: exact,
they give the cohort's exact size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flowblock.executor.disclosure import tables

PATIENT_COLUMN = "patient_id"
WITHHELD = {"estimate": None, "std_error": None, "p_value": None, "withheld": "few_patients"}


def withhold_rare_levels(
    result: dict, rows: pd.DataFrame, predictors: list[str], threshold: int
) -> dict:
    """The model with the coefficients of rarely held levels (and a rare baseline's
    intercept) withheld; ``rows`` are the records it was fitted on."""
    coefficients = dict(result.get("coefficients") or {})
    for predictor in predictors:
        if predictor not in rows.columns:
            continue
        column = rows[predictor]
        yes_no = pd.api.types.is_bool_dtype(column)
        if pd.api.types.is_numeric_dtype(column) and not yes_no:
            continue  # a number is no level: its coefficient is a slope over everyone
        held = _patients_by_level(rows, predictor)
        if held.empty:
            continue
        if held.iloc[0] < threshold and "intercept" in coefficients:
            coefficients["intercept"] = dict(WITHHELD)  # the baseline: the level left out
        for level in held.index[1:]:
            name = predictor if yes_no else f"{predictor}_{level}"
            if name in coefficients and held[level] < threshold:
                coefficients[name] = dict(WITHHELD)
    return {**result, "coefficients": coefficients}


def rounded_sizes(result: dict, base: int) -> dict:
    """The model's record count and degrees of freedom, rounded like every count."""
    rounded = dict(result)
    for field in ("n", "degrees_of_freedom"):
        value = rounded.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            rounded[field] = int(tables.round_counts(np.asarray([value]), base)[0])
    return rounded


def _patients_by_level(rows: pd.DataFrame, predictor: str) -> pd.Series:
    """How many patients hold each level, levels in the order the design matrix uses."""
    present = rows.dropna(subset=[predictor])
    if PATIENT_COLUMN in present.columns:
        counts = present.groupby(predictor, observed=True)[PATIENT_COLUMN].nunique()
    else:
        counts = present.groupby(predictor, observed=True).size()
    return counts.sort_index()

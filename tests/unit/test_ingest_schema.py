"""The schema an import infers is public (it goes on the ledger): its category values
name no identifier and no value a single row holds alone."""

from __future__ import annotations

import pandas as pd

from flowblock.executor.datasets import lean
from flowblock.executor.ingest import infer_schema


def test_identifiers_and_one_row_values_are_never_public_categories():
    frame = pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p3", "p4"],
            "record_id": ["r1", "r2", "r3", "r4"],
            "surname": ["Ash", "Birch", "Cedar", "Dogwood"],  # one each: names, not groups
            "sex": ["F", "M", "F", "M"],
        }
    )
    columns = infer_schema(frame)["columns"]
    assert columns["patient_id"] == columns["record_id"] == columns["surname"] == "string"
    assert columns["sex"] == {"type": "category", "values": ["F", "M"]}


def test_a_schema_of_an_earlier_import_listing_record_ids_still_leans():
    rows = pd.DataFrame({"patient_id": ["p1", "p2"], "record_id": ["r1", "r2"], "age": [30, 40]})
    schema = {"columns": {"record_id": {"type": "category", "values": ["r1", "r2"]},
                          "patient_id": "string", "age": "integer"}}  # fmt: skip
    given = lean(rows, schema)
    assert "record_id" not in given.columns and list(given["age"]) == [30, 40]

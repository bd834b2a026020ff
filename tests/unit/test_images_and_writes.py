"""The checks an images import and a write make before anything is stored (no servers)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flowblock.errors import InvalidArgument
from flowblock.executor.algorithms.base import plain_records
from flowblock.executor.algorithms.xray import _auc, decode_images
from flowblock.executor.images import read_manifest
from flowblock.executor.ingest import read_table, with_text_ids
from flowblock.executor.storage.objects import sha256_hex
from flowblock.executor.writes import rows_frame
from flowblock.executor.xray import MODEL_SHA256, model_bytes, real_images, write_xray_dataset


def jpeg(shade: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (40, 30), shade).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "a.jpeg").write_bytes(jpeg())
    (tmp_path / "b.png").write_bytes(jpeg())
    return tmp_path


def manifest(folder, text: str):
    (folder / "manifest.csv").write_text(text)
    return read_manifest(folder)


def test_a_manifest_names_each_images_patient_and_gets_record_ids(folder):
    read = manifest(folder, "patient_id,file,label\np1,a.jpeg,normal\np2,b.png,pneumonia\n")
    assert list(read["record_id"]) == ["a", "b"]
    assert list(read["patient_id"]) == ["p1", "p2"]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("patient_id,label\np1,normal\n", "a 'file' column"),
        ("patient_id,file\np1,missing.jpeg\n", "an image inside the directory"),
        ("patient_id,file\np1,../a.jpeg\n", "an image inside the directory"),
        ("patient_id,file\np1,notes.txt\n", "a .jpeg, .jpg or .png image"),
        ("patient_id,file,sha256\np1,a.jpeg,x\n", "no 'sha256' column"),
        ("patient_id,file,record_id\np1,a.jpeg,r\np2,b.png,r\n", "unique (one per image)"),
        ("patient_id,file\np1,\np2,b.png\n", "filled in on every row (row 1 is empty)"),
        ("patient_id,file\n,a.jpeg\n", "filled in on every row (row 1 is empty)"),
        ("", "a CSV with a header row"),
        ('patient_id,file\n"p1,a.jpeg\n', "a well-formed CSV"),
    ],
)
def test_a_bad_manifest_is_one_sentence(folder, text, complaint):
    (folder.parent / "a.jpeg").write_bytes(jpeg())
    with pytest.raises(InvalidArgument) as refused:
        manifest(folder, text)
    assert complaint in str(refused.value) and "\n" not in str(refused.value)


def test_numeric_ids_are_text_as_the_ledger_names_them(folder):
    read = manifest(folder, "patient_id,file,record_id\n7,a.jpeg,10\n8,b.png,11\n")
    assert list(read["patient_id"]) == ["7", "8"]
    assert list(read["record_id"]) == ["10", "11"]
    table = with_text_ids(pd.DataFrame({"patient_id": [7.0, 8.0], "record_id": [1, 2]}))
    assert list(table["patient_id"]) == ["7", "8"] and list(table["record_id"]) == ["1", "2"]
    with pytest.raises(InvalidArgument, match=r"row 2 is empty"):
        with_text_ids(pd.DataFrame({"patient_id": ["p1", None], "record_id": ["r1", "r2"]}))


@pytest.mark.parametrize(
    ("name", "content", "complaint"),
    [
        ("vitals.parquet", b"not parquet at all", "a readable Parquet file"),
        ("vitals.csv", b"\xff\xfe\x00garbage", "a well-formed CSV in UTF-8"),
        ("absent.csv", None, "an existing file"),
    ],
)
def test_an_unreadable_table_is_one_sentence(tmp_path, name, content, complaint):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(InvalidArgument) as refused:
        read_table(tmp_path / name)
    assert complaint in str(refused.value) and "\n" not in str(refused.value)


def test_a_directory_without_a_manifest_says_what_it_needs(folder):
    with pytest.raises(InvalidArgument, match=r"a manifest\.csv with columns patient_id, file"):
        read_manifest(folder)


def test_the_xray_dataset_is_the_real_images_then_labelled_variants(tmp_path):
    target = write_xray_dataset(tmp_path, images=20)
    rows = pd.read_csv(target / "manifest.csv")
    real = real_images()
    assert len(real) == 16 and {label for _, label in real} == {"normal", "pneumonia"}
    assert (target / rows["file"][0]).read_bytes() == real[0][0].read_bytes()
    assert list(rows["source"]) == ["real"] * 16 + ["augmented"] * 4
    assert list(rows["label"][16:]) == [label for _, label in real[:4]]
    # The same arguments give the same files: an import rerun changes nothing.
    again = write_xray_dataset(tmp_path / "again", images=20)
    assert (again / rows["file"][19]).read_bytes() == (target / rows["file"][19]).read_bytes()
    assert sha256_hex(model_bytes()) == MODEL_SHA256


def test_images_decode_to_one_array_at_the_models_size():
    images = decode_images(pd.Series([jpeg(0), jpeg(255)]), 16, 1)
    assert images.shape == (2, 16, 16, 1)
    assert images[0].max() < 10 and images[1].min() > 245


def test_auc_is_the_chance_a_positive_outranks_a_negative():
    actual = np.array([0, 0, 1, 1])
    assert _auc(actual, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert _auc(actual, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert _auc(actual, np.array([0.1, 0.6, 0.5, 0.9])) == 0.75


COLUMNS = {
    "record_id": "string",
    "patient_id": "string",
    "age": "integer",
    "systolic": "number",
    "smoker": "boolean",
    "sex": {"type": "category", "values": ["F", "M"]},
}
ACCESS = {"dataset": "vitals", "access_id": "ab" * 32, "record_id": ""}


def test_written_rows_become_a_part_of_the_dataset():
    rows = [{"age": 40.0, "systolic": 120, "smoker": False, "sex": "F"},
            {"record_id": "vitals-00000007", "age": 41}]  # fmt: skip
    frame = rows_frame(rows, COLUMNS, "patient7", ACCESS)
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["patient_id"]) == ["patient7", "patient7"]
    assert frame["record_id"][0].startswith("vitals-wabababab")
    assert frame["record_id"][1] == "vitals-00000007"
    assert frame["age"][0] == 40 and frame["systolic"][0] == 120.0


@pytest.mark.parametrize(
    ("rows", "complaint"),
    [
        ([], "rows must be a non-empty list"),
        ([{"age": "old"}], "rows[0].age must be a whole number, got 'old'"),
        ([{"age": 4.5}], "rows[0].age must be a whole number"),
        ([{"sex": "X"}], "rows[0].sex must be one of F, M"),
        ([{"smoker": 1}], "rows[0].smoker must be true or false"),
        ([{"weight": 80}], "rows[0] must be only the columns age, systolic, smoker, sex"),
        ([{"patient_id": "someone-else"}], "rows[0] must be only the columns"),
        ([{"record_id": "r1"}, {"record_id": "r1"}], "rows must be one row per record"),
        ([{"age": 10**400}], "rows[0].age must be a number between"),
        ([{"age": 1}] * 1001, "rows must be at most 1,000 records in one write"),
        ([{"systolic": -(10**30)}], "rows[0].systolic must be a number between"),
    ],
)
def test_a_bad_row_is_one_sentence_and_nothing_is_written(rows, complaint):
    with pytest.raises(InvalidArgument) as refused:
        rows_frame(rows, COLUMNS, "patient7", ACCESS)
    assert complaint in str(refused.value)


def test_a_correction_changes_the_columns_it_names_and_keeps_the_others():
    stored = pd.DataFrame(
        {
            "record_id": ["vitals-00000007"],
            "patient_id": ["patient7"],
            "age": [40],
            "systolic": [np.nan],
            "smoker": [True],
            "sex": ["M"],
        }
    )
    current = {record["record_id"]: record for record in plain_records(stored)}
    rows = [{"record_id": "vitals-00000007", "systolic": 131.5, "sex": None},
            {"age": 33}]  # fmt: skip
    frame = rows_frame(rows, COLUMNS, "patient7", ACCESS, current)
    corrected, new = frame.to_dict("records")
    assert (corrected["age"], corrected["systolic"], corrected["smoker"]) == (40, 131.5, True)
    assert corrected["sex"] is None  # named, as missing: the writer cleared it
    assert new["age"] == 33 and new["smoker"] is None


def test_a_write_consent_for_one_record_writes_only_that_record():
    limited = {**ACCESS, "record_id": "vitals-00000007"}
    with pytest.raises(InvalidArgument, match="only record 'vitals-00000007'"):
        rows_frame([{"age": 50}], COLUMNS, "patient7", limited)
    assert len(rows_frame([{"record_id": "vitals-00000007"}], COLUMNS, "p", limited)) == 1

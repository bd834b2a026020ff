"""Importing a directory of images: one object per image, its hash on the ledger.

A directory of images comes with a ``manifest.csv`` naming, for each image file, the
patient it belongs to and its metadata (a ``label`` such as ``normal`` / ``pneumonia``,
and any other columns). Each image is stored as its own object and registered as a
record whose hash is the SHA-256 of the image's bytes. The manifest itself (record id,
patient, metadata, object key and hash of every image) is stored as Parquet parts,
each registered with its hash, so the data side reads a dataset's metadata in a few
requests and then fetches only the cohort's images, each checked against its hash.
Like a table import, it is resumable: a rerun stores the same bytes under the same
keys and the ledger reports every record unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from flowblock.errors import InvalidArgument
from flowblock.executor.ingest import (
    PART_ROWS,
    PATIENT_COLUMN,
    RECORD_COLUMN,
    ImportReport,
    Progress,
    ensure_dataset,
    infer_schema,
    part_bytes,
    read_csv,
    register,
    require_filled,
    with_text_ids,
)
from flowblock.executor.storage.objects import ObjectStore
from flowblock.ledger import Contract

MANIFEST = "manifest.csv"
FILE_COLUMN = "file"
#: The manifest columns that locate an image rather than describe it.
OBJECT_COLUMN, HASH_COLUMN = "object_key", "sha256"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def read_manifest(directory: str | Path) -> pd.DataFrame:
    """The directory's manifest, checked: every row names an existing image of a patient."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise InvalidArgument(
            "the image directory",
            f"a {MANIFEST} with columns {PATIENT_COLUMN}, {FILE_COLUMN} and labels",
            str(directory),
        )
    manifest = read_csv(path, dtype={PATIENT_COLUMN: str, FILE_COLUMN: str})
    for column in (PATIENT_COLUMN, FILE_COLUMN):
        if column not in manifest.columns:
            raise InvalidArgument(MANIFEST, f"a {column!r} column")
    require_filled(manifest, FILE_COLUMN, f"{MANIFEST}'s {FILE_COLUMN!r} column")
    for reserved in (OBJECT_COLUMN, HASH_COLUMN):
        if reserved in manifest.columns:
            raise InvalidArgument(MANIFEST, f"no {reserved!r} column (FlowBlock writes it)")
    for file in manifest[FILE_COLUMN]:
        image = directory / file
        if Path(file).suffix.lower() not in IMAGE_SUFFIXES:
            raise InvalidArgument(f"{MANIFEST} file {file!r}", "a .jpeg, .jpg or .png image")
        if not image.is_file() or not image.resolve().is_relative_to(directory.resolve()):
            raise InvalidArgument(f"{MANIFEST} file {file!r}", "an image inside the directory")
    if RECORD_COLUMN not in manifest.columns:
        manifest.insert(0, RECORD_COLUMN, [Path(f).stem for f in manifest[FILE_COLUMN]])
    manifest = with_text_ids(manifest)
    if manifest[RECORD_COLUMN].duplicated().any():
        raise InvalidArgument(f"the images' {RECORD_COLUMN}s", "unique (one per image)")
    return manifest


def import_images(
    directory: str | Path,
    dataset: str,
    records: Contract,
    store: ObjectStore,
    progress: Progress | None = None,
) -> ImportReport:
    """Store the images of ``directory`` as ``dataset``; ``records`` is the steward's contract."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    _ensure_images_dataset(records, dataset, manifest.drop(columns=[FILE_COLUMN]))
    report = ImportReport(dataset, rows=len(manifest))
    for number, start in enumerate(range(0, len(manifest), PART_ROWS)):
        part = manifest.iloc[start : start + PART_ROWS].copy()
        keys, hashes = [], []
        for record_id, file in zip(part[RECORD_COLUMN], part[FILE_COLUMN], strict=True):
            key = f"{dataset}/images/{record_id}{Path(file).suffix.lower()}"
            hashes.append(store.put(key, (directory / file).read_bytes()))
            keys.append(key)
            if progress is not None:
                progress(start + len(keys), len(manifest))
        part[OBJECT_COLUMN], part[HASH_COLUMN] = keys, hashes
        part = part.drop(columns=[FILE_COLUMN])
        part_key = f"{dataset}/manifest-{number:06d}.parquet"
        data = part_bytes(part)
        records.submit("RegisterPartition", dataset, part_key, store.put(part_key, data), len(part))
        entries = [
            {"record_id": str(record_id), "patient": str(patient), "object_key": key,
             "sha256": digest}
            for record_id, patient, key, digest in zip(
                part[RECORD_COLUMN], part[PATIENT_COLUMN], keys, hashes, strict=True
            )
        ]  # fmt: skip
        register(records, dataset, entries, report)
        report.parts += 1
        report.part_keys.append(part_key)
    return report


def _ensure_images_dataset(records: Contract, dataset: str, metadata: pd.DataFrame) -> None:
    columns = infer_schema(metadata.drop(columns=[RECORD_COLUMN]))["columns"]
    ensure_dataset(records, dataset, "images", {"columns": columns})

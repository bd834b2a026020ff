"""Importing a directory of images: one object per image, its hash on the ledger.

A directory of images comes with a ``manifest.csv`` naming, for each image file, the
patient it belongs to and its metadata (a ``label`` such as ``normal`` / ``pneumonia``,
and any other columns). Each image is stored as its own object and registered as a
record whose hash is the SHA-256 of the image's bytes. The manifest itself (record id,
patient, metadata, object key and hash of every image) is stored as Parquet parts,
each registered with its hash, so the data side reads a dataset's metadata in a few
requests and then fetches only the cohort's images, each checked against its hash.
Like a table import, it never replaces a stored object and stores nothing the ledger
has not accepted: an image is named by its hash (``{dataset}/images/{sha256}.jpeg``), and
so is each manifest part (``{dataset}/manifests/{sha256}.parquet``); a rerun stores only
what the bucket lacks and the ledger reports every record unchanged. Another directory
goes into a dataset only when the steward asks to append it, and an image registered
for a record is never replaced by another one: the new image needs a record id of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from flowblock.errors import FlowBlockError, InvalidArgument
from flowblock.executor.ingest import (
    MANIFESTS,
    PART_ROWS,
    PATIENT_COLUMN,
    RECORD_COLUMN,
    ImportReport,
    Part,
    Progress,
    adds_to_another_source,
    check_records,
    content_key,
    imported_parts,
    infer_schema,
    part_bytes,
    read_csv,
    registered_dataset,
    require_append,
    require_filled,
    store_and_register,
    with_text_ids,
)
from flowblock.executor.storage.objects import ObjectStore, sha256_hex
from flowblock.ledger import Contract, all_pages

MANIFEST = "manifest.csv"
FILE_COLUMN = "file"
#: The manifest columns that locate an image rather than describe it.
OBJECT_COLUMN, HASH_COLUMN = "object_key", "sha256"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
#: The folder of a dataset's images.
IMAGES = "images"


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
    *,
    append: bool = False,
) -> ImportReport:
    """Store the images of ``directory`` as ``dataset``; ``records`` is the steward's contract.

    A dataset that holds another directory's images takes these only when ``append``;
    without it the import is refused before anything is stored.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    existing = registered_dataset(records, dataset, "images")
    known = registered_records(records, dataset) if existing else {}
    imported = imported_parts(records, dataset) if existing else {}
    parts = manifest_parts(directory, manifest, dataset, known, imported)
    if adds_to_another_source(parts, imported):
        require_append(append, dataset, "directory")
    if existing is None:
        metadata = manifest.drop(columns=[FILE_COLUMN, RECORD_COLUMN])
        schema = {"columns": infer_schema(metadata)["columns"]}
        records.submit("RegisterDataset", dataset, "images", json.dumps(schema))
    checked = check_records(records, dataset, parts)
    _refuse_replaced_images(dataset, parts, known)
    report = ImportReport(dataset, rows=len(manifest))
    return store_and_register(report, records, store, parts, imported, checked, progress)


def registered_records(records: Contract, dataset: str) -> dict[str, dict]:
    """The dataset's records on the ledger, by record id."""
    listed = all_pages(
        lambda mark: json.loads(records.evaluate("ListRecords", dataset, 1000, mark)), "records"
    )
    return {record["record_id"]: record for record in listed}


def manifest_parts(
    directory: Path,
    manifest: pd.DataFrame,
    dataset: str,
    known: dict[str, dict],
    imported: dict[str, str],
) -> list[Part]:
    """The manifest cut into parts, each row with its image's key and hash: an image is
    named by its hash, unless its record has these bytes registered under a key already
    (before images were named by their hash, they were named by their record)."""
    keys, hashes = [], []
    for record_id, file in zip(manifest[RECORD_COLUMN], manifest[FILE_COLUMN], strict=True):
        digest = sha256_hex((directory / file).read_bytes())
        registered = known.get(record_id)
        if registered is not None and registered["sha256"] == digest:
            keys.append(registered["object_key"])
        else:
            keys.append(content_key(dataset, IMAGES, digest, Path(file).suffix.lower()))
        hashes.append(digest)
    located = manifest.assign(**{OBJECT_COLUMN: keys, HASH_COLUMN: hashes})
    parts = []
    for start in range(0, len(located), PART_ROWS):
        rows = located.iloc[start : start + PART_ROWS]
        data = part_bytes(rows.drop(columns=[FILE_COLUMN]))
        digest = sha256_hex(data)
        key = imported.get(digest) or content_key(dataset, MANIFESTS, digest, ".parquet")
        files = [
            (image_key, directory / file, image_hash)
            for image_key, file, image_hash in zip(
                rows[OBJECT_COLUMN], rows[FILE_COLUMN], rows[HASH_COLUMN], strict=True
            )
        ]
        parts.append(Part(key, data, digest, rows, list(rows[HASH_COLUMN]), files))
    return parts


def _refuse_replaced_images(dataset: str, parts: list[Part], known: dict[str, dict]) -> None:
    """Refuse a record's registered image being replaced by another: the new version of a
    record would name an image, not the manifest part it is listed in, and the data side
    keeps a record's rows by the part its current version names."""
    for part in parts:
        for record_id, digest in zip(part.rows[RECORD_COLUMN], part.hashes, strict=True):
            registered = known.get(record_id)
            if registered and not registered["deleted"] and registered["sha256"] != digest:
                raise FlowBlockError(
                    f"the image for record {record_id!r} of {dataset!r} is not the "
                    "one registered, and an image is never replaced: give the new one a "
                    f"record_id of its own in {MANIFEST} (nothing was stored)."
                )

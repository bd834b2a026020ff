"""The chest X-ray data and model FlowBlock ships with, from ``pneumonia-model-package``.

The package holds 16 real chest X-rays (8 normal, 8 bacterial pneumonia) and a trained
Keras Xception pneumonia classifier. It is installed for these files only and never
imported (its own imports need packages this stack does not carry), so its location
is found without running it. The demo's ``xray`` dataset is the real images plus
augmented variants of them (small rotations, shifts, contrast changes), each assigned
to a synthetic patient, so a cohort is big enough for disclosure control.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import shutil
from pathlib import Path
from typing import Final

from flowblock.errors import ConfigError
from flowblock.executor.storage.objects import sha256_hex

PACKAGE: Final = "pneumonia_model_package"
#: The trained model's file and the SHA-256 it must have: this constant is part of the
#: algorithm's code hash, so the catalogue vouches for the weights as well as the code.
MODEL_FILE: Final = "trained_models/pneumonia_xception_model_val-acc_0.861.keras"
MODEL_SHA256: Final = "d7997cd1923f4d13538f02d64b6d5925e2f87a2a2db8036c074f795c41439e26"
#: The model's input: 150 by 150 RGB, Xception's preprocessing; its two outputs, in order.
MODEL_IMAGE_SIZE: Final = 150
MODEL_CLASSES: Final = ("normal", "pneumonia")


def package_directory() -> Path:
    """Where ``pneumonia-model-package`` is installed, without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the chest X-ray data needs pneumonia-model-package; install FlowBlock's "
            "executor extra ('scripts/setup')."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def real_images() -> list[tuple[Path, str]]:
    """The package's real X-rays with their labels, in a stable order."""
    folder = package_directory() / "datasets" / "pneumonia-data" / "val"
    images = sorted(folder.glob("*.jpeg"))
    return [(path, "normal" if path.name.startswith("NORMAL") else "pneumonia") for path in images]


def model_bytes() -> bytes:
    """The trained classifier's ``.keras`` file, refused if it is not the vouched-for one."""
    data = (package_directory() / MODEL_FILE).read_bytes()
    if sha256_hex(data) != MODEL_SHA256:
        raise ConfigError("the installed pneumonia model is not the one FlowBlock vouches for.")
    return data


def write_xray_dataset(
    target: str | Path, images: int = 96, seed: int = 2026, patient_prefix: str = "patient"
) -> Path:
    """A directory of ``images`` chest X-rays with a ``manifest.csv``, ready to import.

    The first are the 16 real images as they are; the rest are augmented variants of
    them, with the label of their original. Image ``n`` belongs to ``patient<n>`` (with
    the default prefix), so the demo's patients own both vitals and X-rays. The same
    arguments give the same files.
    """
    import numpy as np
    from PIL import Image, ImageEnhance

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = real_images()
    rows = []
    for number in range(1, images + 1):
        source, label = sources[(number - 1) % len(sources)]
        file = f"xray-{number:05d}.jpeg"
        if number <= len(sources):
            shutil.copyfile(source, target / file)
        else:
            with Image.open(source) as original:
                image = original.convert("L")
            image.thumbnail((320, 320))
            shift = tuple(int(n) for n in rng.integers(-12, 13, 2))
            image = image.rotate(float(rng.uniform(-8, 8)), translate=shift)
            image = ImageEnhance.Contrast(image).enhance(float(rng.uniform(0.85, 1.15)))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            (target / file).write_bytes(buffer.getvalue())
        rows.append(
            {"patient_id": f"{patient_prefix}{number}", "file": file, "label": label,
             "source": "real" if number <= len(sources) else "augmented"}
        )  # fmt: skip
    with open(target / "manifest.csv", "w", newline="") as manifest:
        writer = csv.DictWriter(manifest, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target

"""Chest X-ray methods: pneumonia classification, case counts, and training a classifier.

They run on the data side only, over the cohort's images (each already checked
against its hash on the ledger). Classification keeps its per-image labels data-side
for later steps of a flow (counting cases, charting them); training releases only
metrics and a confusion matrix, and leaves the trained model behind as an artifact
the executor stores and hashes, so later tokens can classify with it by token id.
TensorFlow is imported inside these methods, in the sandboxed child, never by the
executor itself (its import alone takes seconds).
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

import numpy as np
import pandas as pd

from flowblock.executor import xray as packaged
from flowblock.executor.algorithms.base import Algorithm, AlgorithmError
from flowblock.executor.algorithms.filters import WHERE_SCHEMA
from flowblock.executor.xray import MODEL_CLASSES, MODEL_IMAGE_SIZE, model_bytes

#: The column an images algorithm finds each image's bytes in, and the labels' column.
IMAGE_COLUMN, LABEL_COLUMN = "image", "label"
CLASSES = MODEL_CLASSES


def decode_images(images: pd.Series, size: int, channels: int) -> np.ndarray:
    """Images' bytes as one float array (N, size, size, channels) with values 0..255.

    Nearest-neighbour resizing, as Keras' loaders do, so the packaged model sees what
    it was trained on.
    """
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    arrays = []
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            resized = image.convert(mode).resize((size, size), Image.Resampling.NEAREST)
        arrays.append(np.asarray(resized, dtype="float32").reshape(size, size, channels))
    return np.stack(arrays) if arrays else np.zeros((0, size, size, channels), "float32")


def load_keras_model(data: bytes):
    """A Keras model from its ``.keras`` bytes (Keras reads models from files only)."""
    import keras

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        with open(path, "wb") as file:
            file.write(data)
        return keras.models.load_model(path)


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class PneumoniaClassify(Algorithm):
    """Labels each X-ray normal or pneumonia; the labels stay data-side, for a flow.

    With no input token it uses the packaged, vouched-for Xception model; given the
    token of an ``xray-train-classifier`` run, it uses the model that run trained.
    """

    name = "pneumonia-classify"
    code_modules = (packaged.__name__,)  # the model, its pinned hash and classes
    description = (
        "Classify each chest X-ray as normal or pneumonia (the labels stay data-side; "
        "count or chart them in a flow). Give a training token as input to use its model."
    )
    parameters = {
        "type": "object",
        "properties": {"where": WHERE_SCHEMA},
        "additionalProperties": False,
    }
    input_kind = "images"
    output_kind = "labels"
    disclosure_class = "labels"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        _quiet_tensorflow()
        trained = bool(self.inputs)
        model = load_keras_model(self.inputs[0]["model"] if trained else model_bytes())
        if trained:  # our own models rescale inside; they take grayscale at their size
            size, channels = model.input_shape[1], model.input_shape[3]
            images = decode_images(frame[IMAGE_COLUMN], size, channels)
        else:
            import keras

            images = decode_images(frame[IMAGE_COLUMN], MODEL_IMAGE_SIZE, 3)
            images = keras.applications.xception.preprocess_input(images)
        self.progress(0.2)
        outputs = model.predict(images, verbose=0, batch_size=16) if len(images) else []
        predictions = []
        for record, patient, output in zip(frame["record_id"], frame["patient_id"], outputs,
                                           strict=True):  # fmt: skip
            probability = float(output[0]) if trained else float(_softmax(output)[1])
            predictions.append(
                {"record_id": str(record), "patient_id": str(patient),
                 "predicted": CLASSES[int(probability >= 0.5)],
                 "probability": round(probability, 4)}
            )  # fmt: skip
        return {"predictions": predictions, "model": "trained" if trained else "packaged"}


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - np.max(logits))
    return exp / exp.sum()


class XrayCaseCount(Algorithm):
    """How many X-rays an earlier classification called pneumonia, and how many normal."""

    name = "xray-case-count"
    code_modules = (packaged.__name__,)  # the model, its pinned hash and classes
    description = "Count the pneumonia and normal cases an earlier pneumonia-classify found."
    parameters = {"type": "object", "properties": {}, "additionalProperties": False}
    input_kind = "tokens"
    output_kind = "table"
    disclosure_class = "count_table"  # keyed by its "prediction" field, not a number

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        predictions = [p for output in self.inputs for p in (output or {}).get("predictions", [])]
        if not predictions:
            raise AlgorithmError("the input token holds no X-ray classification to count.")
        groups = []
        for label in CLASSES:
            count = sum(p["predicted"] == label for p in predictions)
            groups.append({"prediction": label, "count": count})
        return {"groups": groups}


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int = 5,
    holdout: float = 0.25,
    seed: int = 0,
    on_epoch=None,
) -> tuple[dict, bytes]:
    """Train a small CNN on grayscale images; its holdout metrics and ``.keras`` bytes.

    The same function serves the data side and a researcher's local script, so the
    benchmark compares like with like.
    """
    _quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    # Stratified: each class contributes its share of the holdout.
    test = np.concatenate([
        order[labels[order] == c][: max(1, round(holdout * (labels == c).sum()))] for c in (0, 1)
    ])  # fmt: skip
    train = np.setdiff1d(order, test)
    size = images.shape[1]
    model = keras.Sequential([
        keras.Input((size, size, 1)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(1, activation="sigmoid"),
    ])  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch((epoch + 1) / epochs)
        ))  # fmt: skip
    history = model.fit(
        images[train], labels[train], epochs=epochs, batch_size=16, verbose=0,
        shuffle=True, callbacks=callbacks,
    )  # fmt: skip
    probabilities = model.predict(images[test], verbose=0).ravel()
    predicted = (probabilities >= 0.5).astype(int)
    actual = labels[test]
    metrics = {
        "accuracy": round(float((predicted == actual).mean()), 4),
        "auc": round(_auc(actual, probabilities), 4),
        "training_loss": round(float(history.history["loss"][-1]), 4),
    }
    confusion = [
        {"actual": CLASSES[a], "predicted": CLASSES[p],
         "count": int(((actual == a) & (predicted == p)).sum())}
        for a in (0, 1) for p in (0, 1)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        with open(path, "rb") as file:
            data = file.read()
    summary = {"metrics": metrics, "confusion_matrix": confusion,
               "training_records": len(train), "holdout_records": len(test)}  # fmt: skip
    return summary, data


def _auc(actual: np.ndarray, scores: np.ndarray) -> float:
    """The ROC AUC: the chance a random positive scores above a random negative."""
    positives, negatives = scores[actual == 1], scores[actual == 0]
    if not len(positives) or not len(negatives):
        return float("nan")
    wins = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((wins + 0.5 * ties) / (len(positives) * len(negatives)))


class XrayTrainClassifier(Algorithm):
    """Train a pneumonia classifier on the consented X-rays; only its metrics leave."""

    name = "xray-train-classifier"
    code_modules = (packaged.__name__,)  # the model, its pinned hash and classes
    description = (
        "Train a pneumonia classifier on the cohort's chest X-rays and evaluate it on a "
        "held-out share; releases accuracy, AUC and a confusion matrix. The model stays "
        "data-side: classify with it by giving this token as pneumonia-classify's input."
    )
    parameters = {
        "type": "object",
        "properties": {
            "epochs": {"type": "integer", "minimum": 1, "maximum": 50},
            "image_size": {"type": "integer", "minimum": 32, "maximum": 224},
            "holdout": {"type": "number", "minimum": 0.1, "maximum": 0.5},
            "seed": {"type": "integer", "minimum": 0},
            "where": WHERE_SCHEMA,
        },
        "additionalProperties": False,
    }
    input_kind = "images"
    output_kind = "model"
    disclosure_class = "model"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        labels = frame[LABEL_COLUMN].map({c: n for n, c in enumerate(CLASSES)})
        if labels.isna().any():
            raise AlgorithmError(f"every X-ray needs a label among {', '.join(CLASSES)}.")
        labels = labels.to_numpy(dtype=int)
        if min((labels == 0).sum(), (labels == 1).sum()) < 4:
            raise AlgorithmError("training needs at least 4 X-rays of each label.")
        size = params.get("image_size", 96)
        images = decode_images(frame[IMAGE_COLUMN], size, 1)
        epochs = params.get("epochs", 5)
        summary, self.artifact = train_classifier(
            images, labels, epochs, params.get("holdout", 0.25), params.get("seed", 0),
            on_epoch=self.progress,
        )  # fmt: skip
        return {**summary, "epochs": epochs, "image_size": size}

"""Apply a trained run to any SampleTable: soft labels for another dataset.

The result is the input table with ``p_<class>`` (the model's softmax), ``d_<class>`` = ``p_*``
and ``lambda`` = NaN: λ and the constructed distribution d exist only for the samples a run
was trained on (they need the sample's given label and training neighbours), so for foreign
data the prediction itself is the soft label. Classes are matched by canonical name: the
table's labels are re-indexed into the run's class order (``attrs["classes"]`` becomes the
run's classes); a table class the run does not know is a DatasetError. Rows whose image
cannot be read are dropped with a DatasetWarning.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from .classes import canonical_name
from .table import DatasetError, classes_of, d_columns, p_columns


def predict(run, table: pd.DataFrame, *, batch_size: int = 64, device: str = "auto",
            progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    from .augment import to_float
    from .images import load_readable_images
    from .model import build_model
    from .precision import choose_precision
    from .config import TrainConfig, resolve_device

    ckpt = run.checkpoint()
    if ckpt is None:
        raise DatasetError(f"{run.path}: the run has no trained model yet (no checkpoint.pt); train it first")
    config = TrainConfig.from_dict(ckpt["config"])
    run_classes = [canonical_name(c) for c in ckpt["classes"]]
    table_classes = [canonical_name(c) for c in classes_of(table)]
    unknown = [c for c in table_classes if c not in run_classes]
    if unknown:
        raise DatasetError(f"{table.attrs.get('root', 'dataset')}: classes {unknown} are unknown to the run "
                           f"{run.path} (it was trained on {', '.join(run_classes)})")
    remap = np.array([run_classes.index(c) for c in table_classes], dtype=np.int64)

    table, images = load_readable_images(table, config.image_size, config.channels)
    if len(table) == 0:
        raise DatasetError(f"{table.attrs.get('root', 'dataset')}: no readable images to predict")

    dev = resolve_device(device)
    model = build_model(config.model_config(len(run_classes)))
    model.load_state_dict(ckpt["model"])
    # the run's own precision, so a trained sample gets the same p here as in samples.csv
    precision = choose_precision(dev, config.amp, config.channels_last)
    precision.prepare_model(model.to(dev)).eval()
    probs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = precision.prepare_input(to_float(torch.as_tensor(images[start:start + batch_size]).to(dev)))
            with precision.autocast():
                logits, _ = model(x)
            probs.append(torch.softmax(logits.float(), -1).cpu().numpy().astype(np.float64))
            if progress is not None:
                progress(min(start + batch_size, len(images)), len(images))
    p = np.concatenate(probs)
    p /= p.sum(1, keepdims=True)

    out = table.copy()
    out["label"] = remap[out["label"].to_numpy(np.int64)]
    if "label_original" in out:
        out["label_original"] = remap[out["label_original"].to_numpy(np.int64)]
    out = out.drop(columns=[c for c in out.columns if c.startswith(("p_", "d_"))] + ["lambda"], errors="ignore")
    out["lambda"] = np.nan
    for j, (dc, pc) in enumerate(zip(d_columns(run_classes), p_columns(run_classes))):
        out[dc] = p[:, j]
        out[pc] = p[:, j]
    out.attrs = {**table.attrs, "classes": list(run_classes)}
    return out

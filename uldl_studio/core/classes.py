"""Emotion class sets, name synonyms and the valence-arousal centroid table.

Every class name inside ULDL Studio is a *canonical* name (lower case, one of
``CANONICAL``); adapters map their dataset's codes and spellings onto it with
``canonical_name``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

CANONICAL: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)

# Class order of each native layout (index = the code the layout stores).
FERPLUS_CLASSES: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
)
RAFDB_CLASSES: tuple[str, ...] = (  # labels 1..7 in list_patition_label.txt
    "surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral",
)
AFFECTNET_CLASSES: tuple[str, ...] = (  # expression codes 0..7; 8..10 are not emotions
    "neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt",
)
FER2013_CLASSES: tuple[str, ...] = (  # emotion codes 0..6 in fer2013.csv
    "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral",
)

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "ferplus": FERPLUS_CLASSES,
    "rafdb": RAFDB_CLASSES,
    "affectnet": AFFECTNET_CLASSES,
    "fer2013": FER2013_CLASSES,
    "demo": ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"),
}

SYNONYMS: dict[str, str] = {
    "neutral": "neutral", "neu": "neutral", "calm": "neutral",
    "happiness": "happiness", "happy": "happiness", "joy": "happiness", "hap": "happiness",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise",
    "sadness": "sadness", "sad": "sadness",
    "anger": "anger", "angry": "anger", "ang": "anger",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "contempt": "contempt", "contemptuous": "contempt",
}

# Approximate valence-arousal centroids of the basic emotions, both axes in [-1, 1].
# Source: positions on Russell's circumplex of affect (J. A. Russell, "A circumplex model of
# affect", J. Pers. Soc. Psychol. 39(6), 1980, Fig. 2, angles read off and scaled to radius
# ~0.7) cross-checked against the per-category mean valence/arousal of AffectNet
# (A. Mollahosseini et al., "AffectNet", IEEE Trans. Affective Computing 2017, Fig. 5).
# They are only priors for pseudo valence-arousal; override them with
# ``TrainConfig.va_centroids``.
VA_CENTROIDS: dict[str, tuple[float, float]] = {
    "neutral": (0.00, 0.00),
    "happiness": (0.75, 0.35),
    "surprise": (0.20, 0.75),
    "sadness": (-0.65, -0.35),
    "anger": (-0.55, 0.65),
    "disgust": (-0.70, 0.30),
    "fear": (-0.40, 0.80),
    "contempt": (-0.50, 0.15),
}


def canonical_name(name: str) -> str:
    """Map a class name or synonym ('Happy', 'angry') to its canonical name.

    Raises ``ValueError`` naming the unknown label and the accepted names.
    """
    key = str(name).strip().lower()
    if key in SYNONYMS:
        return SYNONYMS[key]
    raise ValueError(
        f"unknown emotion label {name!r}; expected one of {', '.join(CANONICAL)} "
        f"(or a synonym such as happy, angry, sad)"
    )


def centroid_matrix(classes: Sequence[str], table: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """(m, 2) array of V-A centroids for ``classes`` (canonical names), from ``table`` or the default."""
    table = VA_CENTROIDS if table is None else {**VA_CENTROIDS, **table}
    return np.asarray([table[canonical_name(c)] for c in classes], dtype=np.float64)

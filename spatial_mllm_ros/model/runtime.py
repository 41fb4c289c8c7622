"""SpatialModel: multi-frame spatial questions in, typed answers out.

One call = check inputs -> encode frames (embedding cache first, then the vision backend) -> build the
MultiSPA prompts -> one language batch (closed sets scored from logits, open questions generated) ->
parse answers. Timing is split into vision and language parts.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatial_mllm_ros.answers import Answer, Question, QuestionKind, parse_answer
from spatial_mllm_ros.conventions import AnswerStage, best_numeric_answer, format_value, task_description
from spatial_mllm_ros.model.calibration import load_calibration
from spatial_mllm_ros.model.config import ModelConfig, shift_expert_path
from spatial_mllm_ros.model.errors import (
    FrameError,
    ModelError,
    ModelLoadError,
    QuestionError,
    TooManyFramesError,
)
from spatial_mllm_ros.model.language import LanguageDecoder, NumberSpec, RowRequest, make_decoder
from spatial_mllm_ros.model.loading import LoadedModel, load
from spatial_mllm_ros.model.ood import FeatureStats, frame_descriptor
from spatial_mllm_ros.model.preprocess import ImageSpec, check_frame, image_token_count, prepare_image
from spatial_mllm_ros.model.prompts import PromptEncoder
from spatial_mllm_ros.model.vision import FrameFeatures, VisionBackend, select_backend

log = logging.getLogger(__name__)

SCORED_NUMBER_KINDS = frozenset({QuestionKind.DISTANCE, QuestionKind.DEPTH})  # non-negative integer mm
TOP_VALUES = 5  # likeliest values reported in Answer.probabilities for integer answers


@dataclass
class Timing:
    """Where the time of the last call went, in milliseconds."""

    vision_ms: float = 0.0
    language_ms: float = 0.0
    total_ms: float = 0.0
    frames: int = 0
    frames_cached: int = 0
    questions: int = 0


@dataclass
class CacheStats:
    """Embedding-cache counters."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0
    capacity_bytes: int = 0


@dataclass
class EmbeddingCache:
    """LRU of frame embeddings bounded by bytes; key = frame key (topic@stamp) or a content hash."""

    capacity_bytes: int
    _items: OrderedDict[str, FrameFeatures] = field(default_factory=OrderedDict)
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        self.stats.capacity_bytes = self.capacity_bytes
        self._lock = threading.Lock()

    def get(self, key: str) -> FrameFeatures | None:
        """Return the cached embeddings of `key`, most recently used from now on (None: miss)."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.stats.misses += 1
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            return item

    def put(self, key: str, item: FrameFeatures) -> None:
        """Store, evicting least recently used entries until the byte budget holds."""
        size = item.nbytes
        if size > self.capacity_bytes:
            return
        with self._lock:
            if key in self._items:
                self.stats.bytes -= self._items.pop(key).nbytes
            self._items[key] = item
            self.stats.bytes += size
            while self.stats.bytes > self.capacity_bytes:
                _, old = self._items.popitem(last=False)
                self.stats.bytes -= old.nbytes
                self.stats.evictions += 1
            self.stats.entries = len(self._items)

    def clear(self) -> None:
        """Drop everything (counters stay)."""
        with self._lock:
            self._items.clear()
            self.stats.bytes = self.stats.entries = 0


def content_key(image: np.ndarray) -> str:
    """Make a cache key from the pixels themselves, for callers without a topic@stamp key."""
    h = hashlib.blake2b(image.data, digest_size=16)
    h.update(str(image.shape).encode())
    return "px:" + h.hexdigest()


class SpatialModel:
    """A loaded multi-frame spatial model: ask(images, question) -> Answer."""

    def __init__(self, loaded: LoadedModel, config: ModelConfig) -> None:
        self.config = config
        self.loaded = loaded
        self.model, self.tokenizer, self.family = loaded.model, loaded.tokenizer, loaded.family
        self.name = loaded.name
        self.device = str(loaded.device)
        self.spec = ImageSpec.from_checkpoint(
            loaded.family, self.model.config, loaded.checkpoint, config.max_tiles, config.use_thumbnail
        )
        self.prompts = PromptEncoder(self.tokenizer, loaded.family)
        self.decoder: LanguageDecoder = make_decoder(
            loaded.family, self.model, self.tokenizer, config.question_batch
        )
        max_tiles = config.max_frames * (config.max_tiles + 1)
        self.vision: VisionBackend
        self.vision, self.skipped_backends = select_backend(
            config.vision_backends,
            self.model,
            loaded.family,
            loaded.checkpoint,
            max_tiles,
            config.measure_backends,
        )
        self.cache = EmbeddingCache(config.cache_bytes)
        # Saved beside the weights when fitted: a temperature for closed-set confidences, and statistics of
        # familiar frames' features for the out-of-distribution score. Either may be absent.
        checkpoint = loaded.checkpoint
        self.calibration = load_calibration(checkpoint) if checkpoint is not None else None
        self.ood_stats = FeatureStats.load(checkpoint) if checkpoint is not None else None
        self.last_timing = Timing()
        limit = config.context_tokens or getattr(
            self.model.config.get_text_config(), "max_position_embeddings", 32768
        )
        self.context_limit = int(limit)
        self._option_cache: dict[tuple[str, ...], dict[str, int] | None] = {}
        scored = config.number_beam > 0 and self.decoder.scores_numbers
        self.number_spec = self._number_spec() if scored else None
        self._lock = threading.Lock()
        try:
            self.expert = self._load_expert(checkpoint)
        except Exception:  # free this model's backend now (GPU memory), not whenever the collector runs
            self.vision.close()
            raise
        self.expert_answers = 0  # questions the shift expert answered
        log.info(
            "spatial model %s ready: vision backend %s (skipped: %s), temperature %s, OOD statistics %s",
            self.name,
            self.backend,
            self.skipped_backends or "none",
            f"{self.calibration.temperature:.3g}" if self.calibration else "none",
            f"of {self.ood_stats.n_frames} frames" if self.ood_stats else "none",
        )

    def _load_expert(self, checkpoint: Path | None) -> SpatialModel | None:
        """Load the shift expert (ModelConfig.shift_expert), or return None where there is none.

        A model trained on other looks, for the frames whose OOD score says this one never saw their like.
        """
        path = shift_expert_path(self.config.shift_expert, checkpoint)
        if path is None:
            return None
        if self.ood_stats is None:
            raise ModelLoadError(
                f"shift expert {path}: {self.name} has no OOD statistics to tell when to ask it; fit them "
                "(spatial-mllm ood fit --checkpoint ...) or set shift_expert: none"
            )
        own = replace(self.config, checkpoint=str(path), adapter="", shift_expert="none")
        expert = SpatialModel.load(own)
        log.info("shift expert %s answers when %s's OOD score is above %g", expert.name, self.name,
                 self.config.shift_expert_above)
        return expert

    @classmethod
    def load(cls, config: ModelConfig | None = None) -> SpatialModel:
        """Load from a ModelConfig; raises ModelLoadError (and subclasses) naming what is wrong."""
        config = config or ModelConfig()
        return cls(load(config), config)

    @property
    def backend(self) -> str:
        """Name of the vision backend in use (it can drop to "torch" if a compiled graph fails)."""
        return self.vision.name

    @property
    def cache_stats(self) -> CacheStats:
        """Embedding-cache counters (hits, misses, bytes...)."""
        return self.cache.stats

    # ------------------------------------------------------------------ inputs

    def _check_images(
        self, images: Sequence[np.ndarray], keys: Sequence[str] | None
    ) -> tuple[list[np.ndarray], list[str]]:
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        if images is None or len(images) == 0:
            raise FrameError("zero frames: a spatial question needs at least one frame")
        if len(images) > self.config.max_frames:
            raise TooManyFramesError(len(images), self.config.max_frames)
        checked = [check_frame(img, i) for i, img in enumerate(images)]
        if keys is not None and len(keys) != len(checked):
            raise FrameError(f"{len(keys)} keys for {len(checked)} frames")
        keys = list(keys) if keys is not None else [content_key(img) for img in checked]
        return checked, keys

    def _check_question(self, question: str | Question) -> Question:
        q = (
            question
            if isinstance(question, Question)
            else Question(question)
            if isinstance(question, str)
            else None
        )
        if q is None or not isinstance(q.text, str):
            raise QuestionError(f"question must be text, got {type(question).__name__}")
        if not q.text.strip():
            raise QuestionError("empty question")
        if len(q.text) > self.config.max_question_chars:
            raise QuestionError(
                f"question of {len(q.text)} characters exceeds max_question_chars="
                f"{self.config.max_question_chars}"
            )
        return q

    def _option_ids(self, options: tuple[str, ...]) -> dict[str, int] | None:
        """First token of each option after the answer prefix; None if they are not distinct single steps."""
        if options in self._option_cache:
            return self._option_cache[options]
        prefix = self.config.answer_prefix
        base = self.tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        ids: dict[str, int] = {}
        for opt in options:
            full = self.tokenizer(prefix + opt, add_special_tokens=False)["input_ids"]
            if full[: len(base)] != base or len(full) <= len(base):
                ids = {}
                break
            ids[opt] = full[len(base)]
        result = ids if ids and len(set(ids.values())) == len(ids) else None
        if result is None:
            log.warning("options %s do not map to distinct tokens: answering by generation", options)
        self._option_cache[options] = result
        return result

    def _number_spec(self) -> NumberSpec | None:
        """Digit and closing-token ids after the answer prefix; None unless integers are one token a digit."""
        prefix = self.config.answer_prefix
        if not prefix:
            return None

        def ids(text: str) -> list[int]:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

        base = ids(prefix)
        spelt = [ids(prefix + d + prefix) for d in "0123456789"]  # prefix, the digit, the closing token
        digits = [row[len(base)] if len(row) == len(base) + 2 else -1 for row in spelt]
        ends = {row[-1] for row in spelt}
        if (
            any(row[: len(base)] != base or len(row) != len(base) + 2 for row in spelt)
            or len(ends) != 1
            or ids(prefix + "1234567890" + prefix) != [*base, *digits[1:], digits[0], *ends]
        ):
            log.info("integers are not one token per digit here: distances are answered greedily")
            return None
        return NumberSpec(tuple(digits), ends.pop(), self.config.number_beam)

    # ------------------------------------------------------------------ vision

    def encode_frames(
        self, images: Sequence[np.ndarray], keys: Sequence[str]
    ) -> tuple[list[FrameFeatures], int]:
        """Embeddings of every frame, from the cache where possible; returns (features, cache hits)."""
        found: list[FrameFeatures | None] = []
        for key in keys:
            found.append(self.cache.get(key) if self.config.cache_bytes > 0 else None)
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            prepared = [
                prepare_image(images[i], self.spec, self.loaded.device, self.config.resize) for i in missing
            ]
            encoded = self.vision.encode(prepared)
            for i, feats in zip(missing, encoded):
                found[i] = feats
                if self.config.cache_bytes > 0:
                    self.cache.put(keys[i], feats)
        return [f for f in found if f is not None], len(keys) - len(missing)

    def frame_descriptors(self, images: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
        """Describe each frame as the OOD statistics see it (encoded without the cache), for fitting them."""
        rows = []
        for start in range(0, len(images), batch):
            chunk = [check_frame(img, start + i) for i, img in enumerate(images[start:start + batch])]
            prepared = [prepare_image(im, self.spec, self.loaded.device, self.config.resize) for im in chunk]
            rows += [frame_descriptor(f.embeds) for f in self.vision.encode(prepared)]
        return np.stack(rows)

    def ood_score(self, features: Sequence[FrameFeatures]) -> float | None:
        """Score the least familiar frame (None without statistics): one odd frame is reason to doubt."""
        if self.ood_stats is None:
            return None
        descriptors = np.stack([frame_descriptor(f.embeds) for f in features])
        return float(self.ood_stats.score(descriptors).max())

    # ------------------------------------------------------------------ questions

    def ask(
        self, images: Sequence[np.ndarray], question: str | Question, keys: Sequence[str] | None = None,
        on_stage: Callable[[AnswerStage], None] | None = None,
    ) -> Answer:
        """Answer one question about frames (RGB uint8 HxWx3, oldest first)."""
        return self.ask_many(images, [question], keys, on_stage)[0]

    def ask_many(
        self,
        images: Sequence[np.ndarray],
        questions: Sequence[str | Question],
        keys: Sequence[str] | None = None,
        on_stage: Callable[[AnswerStage], None] | None = None,
    ) -> list[Answer]:
        """Answer several questions about the same frames as one batch (frames encoded once).

        `on_stage` is told when the vision encoder starts and when the language model takes over.
        """
        if isinstance(questions, (str, Question)):
            questions = [questions]
        if not questions:
            raise QuestionError("no questions")
        if self.model is None:
            raise ModelError(f"model {self.name} was closed")
        qs = [self._check_question(q) for q in questions]
        frames, keys = self._check_images(images, keys)
        with self._lock:
            return self._answer(frames, keys, qs, on_stage or (lambda stage: None))

    def _answer(self, frames: list[np.ndarray], keys: list[str], qs: list[Question],
                on_stage: Callable[[AnswerStage], None]) -> list[Answer]:
        t0 = time.perf_counter()
        image_tokens = [image_token_count(f.shape[0], f.shape[1], self.spec) for f in frames]
        rows, kinds = [], []
        shared: list[int] = []
        for q in qs:
            kind = q.resolved_kind()
            options = q.resolved_options()
            option_ids = self._option_ids(tuple(options)) if options else None
            number = self.number_spec if kind in SCORED_NUMBER_KINDS else None
            prefix = self.config.answer_prefix if option_ids or number else ""
            enc = self.prompts.encode(image_tokens, task_description(kind), q.text, prefix)
            shared = enc.shared
            rows.append(RowRequest(enc.question, option_ids, number))
            kinds.append(kind)
        longest = len(shared) + max(len(r.question_ids) for r in rows) + self.config.max_new_tokens
        if longest > self.context_limit:  # refused before any encoding work
            raise TooManyFramesError(len(frames), self.context_limit, tokens=longest)
        on_stage(AnswerStage.VISION)
        tv = time.perf_counter()
        features, hits = self.encode_frames(frames, keys)
        if self.loaded.device.type == "cuda":
            torch.cuda.synchronize(self.loaded.device)
        t1 = time.perf_counter()
        if [f.embeds.shape[0] for f in features] != image_tokens:
            raise ModelError(
                f"vision backend {self.backend} returned token counts that do not match the prompt"
            )
        ood = self.ood_score(features)
        if self.expert is not None and ood is not None and ood > self.config.shift_expert_above:
            return self._ask_expert(frames, keys, qs, on_stage, t0, t1 - tv, hits)
        on_stage(AnswerStage.LANGUAGE)
        results = self.decoder.run(shared, features, rows, self.config.max_new_tokens)
        t2 = time.perf_counter()
        answers = []
        frame_size = (frames[-1].shape[1], frames[-1].shape[0])
        for kind, res in zip(kinds, results):
            if res.values:
                ans = self._number_answer(kind, res.values, res.number_mass or 1.0, frame_size)
            elif res.probabilities is not None:
                ans = parse_answer(f"{self.config.answer_prefix}{res.text}`", kind, frame_size)
                ans.value = res.text if ans.value is None else ans.value
                probabilities = res.probabilities
                if self.calibration is not None:  # softens or sharpens; never changes the likeliest option
                    probabilities = self.calibration.apply(probabilities, ood)
                ans.probabilities = probabilities
                ans.confidence = probabilities[res.text]
                ans.error = None
            else:
                ans = parse_answer(res.text, kind, frame_size)
            ans.ood_score = ood
            answers.append(ans)
        vision_s = t1 - tv  # prompt building counts as language time
        self.last_timing = Timing(
            vision_s * 1e3, (t2 - t0 - vision_s) * 1e3, (t2 - t0) * 1e3, len(frames), hits, len(qs)
        )
        return answers

    def _ask_expert(self, frames: list[np.ndarray], keys: list[str], qs: list[Question],
                    on_stage: Callable[[AnswerStage], None], t0: float, vision_s: float, hits: int,
                    ) -> list[Answer]:
        """Hand the questions to the shift expert; its answers carry its own confidence and OOD score."""
        assert self.expert is not None
        if self.expert_answers == 0:
            log.info("frames out of distribution for %s: the shift expert %s answers such questions",
                     self.name, self.expert.name)
        with self.expert._lock:  # always this model's lock first, then the expert's: no deadlock
            answers = self.expert._answer(
                frames, keys, qs, lambda stage: on_stage(stage) if stage is AnswerStage.LANGUAGE else None)
        self.expert_answers += len(qs)
        t = self.expert.last_timing
        self.last_timing = Timing(vision_s * 1e3 + t.vision_ms, t.language_ms,
                                  (time.perf_counter() - t0) * 1e3, len(frames), hits, len(qs))
        return answers

    def _number_answer(
        self, kind: QuestionKind, values: dict[int, float], number_mass: float, frame_size: tuple[int, int]
    ) -> Answer:
        """Answer with the value likeliest within the metric's tolerance; confidence = that likelihood.

        The likelihood counts what the digit tree did not reach as outside the tolerance, so it errs low.
        """
        value, share = best_numeric_answer(kind, values)
        held = sum(values.values())
        ans = parse_answer(format_value(kind, value), kind, frame_size)
        top = sorted(values.items(), key=lambda kv: -kv[1])[:TOP_VALUES]
        ans.probabilities = {str(v): p / number_mass for v, p in top}
        ans.confidence = min(1.0, share * held / number_mass)
        return ans

    def close(self) -> None:
        """Free the model, backend and cache (and GPU memory), and the shift expert's."""
        if self.expert is not None:
            self.expert.close()
        self.vision.close()
        self.cache.clear()
        self.model = None
        self.loaded.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        config: ModelConfig | None = None,
        family: str = "internvl",
        name: str = "in-memory",
    ) -> SpatialModel:
        """Wrap an in-memory model (e.g. factory.make_real_shape_model) for benchmarks."""
        config = config or ModelConfig()
        loaded = LoadedModel(
            model,
            tokenizer,
            family,
            None,
            model.device,
            model.dtype,
            sum(p.numel() for p in model.parameters()),
            name,
        )
        return cls(loaded, config)

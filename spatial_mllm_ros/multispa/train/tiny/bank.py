"""Stage 2's questions: grouped by frames so a batch encodes them once, drawn sub-task by sub-task.

Every frame pair's and single frame's questions are drawn from truth up front; token ids are made when a
question is first drawn (the tokenizer is trained on the questions first).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from spatial_mllm_ros.conventions import QuestionKind, build_prompt, task_description
from spatial_mllm_ros.model.prompts import PromptEncoder
from spatial_mllm_ros.multispa.train.questions import Question, frame_questions, pair_questions


@dataclass
class Item:
    """One question ready for the LLM: frames (episode index, frame indices), token ids and labels."""

    episode: int
    frames: tuple[int, ...]
    ids: list[int]
    labels: list[int]
    question: Question

    @property
    def task(self) -> str:
        """Sub-task name."""
        return self.question.task


def balance_weights(questions: list[Question]) -> np.ndarray:
    """Draw weights that give every sub-task the same share, and its answers inverse-square-root shares.

    Natural counts are skewed (a still object gives "no" to every "did it move <direction>?", and
    object-direction questions are 2 % of all): drawn as they come, the model learns the priors first.
    Distances count as one answer.
    """
    keys = [(q.task, "" if q.kind is QuestionKind.DISTANCE else q.answer) for q in questions]
    answers: dict[tuple[str, str], int] = defaultdict(int)
    for k in keys:
        answers[k] += 1
    norm: dict[str, float] = defaultdict(float)
    for (task, _), n in answers.items():
        norm[task] += math.sqrt(n)
    return np.array([1.0 / math.sqrt(answers[k]) / norm[k[0]] for k in keys])


class QuestionBank:
    """Questions of every frame pair and single frame, grouped by frames so a batch encodes them once.

    Token ids are made when a question is first drawn; draws follow balance_weights.
    """

    def __init__(self, truths: list[dict], seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.groups: dict[tuple[int, tuple[int, ...]], list[Question]] = {}
        for e, truth in enumerate(truths):
            n = len(truth["T_world_cam"])
            for t1 in range(n):
                for t2 in range(t1 + 1, n):
                    self.groups[(e, (t1, t2))] = pair_questions(truth, t1, t2, rng)
                self.groups[(e, (t1,))] = frame_questions(truth, t1, rng)
        self.groups = {k: v for k, v in self.groups.items() if v}
        self.keys = list(self.groups)
        self.gaps = np.array([k[1][-1] - k[1][0] if len(k[1]) == 2 else 0 for k in self.keys])
        flat = balance_weights(self.questions())
        bounds = np.cumsum([0] + [len(self.groups[k]) for k in self.keys])
        self.weights = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self._group_weight: dict[int, np.ndarray] = {}
        self._cache: dict[tuple[int, tuple[int, ...], int], Item] = {}
        self.prompts: PromptEncoder | None = None
        self.tokens_per_image = 0

    def questions(self) -> list[Question]:
        """Every question (for the tokenizer corpus)."""
        return [q for g in self.groups.values() for q in g]

    def item(self, key: tuple[int, tuple[int, ...]], k: int) -> Item:
        """Return the k-th question of a frame group, tokenized (cached)."""
        ck = (key[0], key[1], k)
        if ck not in self._cache:
            assert self.prompts is not None, "call bind() first"
            q = self.groups[key][k]
            prompt = build_prompt(len(key[1]), task_description(q.kind), q.question)
            ids, labels = self.prompts.encode_training(
                [self.tokens_per_image] * len(key[1]), prompt, q.answer
            )
            self._cache[ck] = Item(key[0], key[1], ids, labels, q)
        return self._cache[ck]

    def bind(self, prompts: PromptEncoder, tokens_per_image: int) -> None:
        """Attach the tokenizer's prompt encoder (made after the corpus is known)."""
        self.prompts, self.tokens_per_image = prompts, tokens_per_image

    def items(self) -> list[Item]:
        """Every question, tokenized."""
        return [self.item(key, k) for key in self.keys for k in range(len(self.groups[key]))]

    def sample(self, rng: random.Random, n_questions: int, per_group: int, large_first: float) -> list[Item]:
        """Draw n_questions, at most per_group from each frame group (far pairs favoured by large_first).

        Questions within a group are drawn by weight, groups by their questions' total weight over how
        many a draw takes from them, so each question is drawn about as often as its weight says.
        """
        if per_group not in self._group_weight:
            self._group_weight[per_group] = np.array([q.sum() / min(per_group, len(q)) for q in self.weights])
        w = np.where(self.gaps > 0, (1.0 + self.gaps) ** (3.0 * large_first), 1.0)
        w = w * self._group_weight[per_group]
        draw = np.random.default_rng(rng.randrange(1 << 30))
        picks = iter(draw.choice(len(self.keys), size=n_questions, p=w / w.sum()))  # enough: >= 1 each
        out: list[Item] = []
        while len(out) < n_questions:
            p = int(next(picks))
            key, qw = self.keys[p], self.weights[p]
            size = min(per_group, len(qw), n_questions - len(out))
            chosen = draw.choice(len(qw), size=size, replace=False, p=qw / qw.sum())
            out += [self.item(key, int(k)) for k in chosen]
        return out

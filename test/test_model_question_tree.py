"""Questions over the same frames as one token tree: same answers as a padded batch and as each question
run alone through the model's own forward (no shared KV cache), at the cost of the distinct tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_mllm_ros.answers import Question
from spatial_mllm_ros.conventions import QuestionKind, task_description
from spatial_mllm_ros.model.config import ModelConfig
from spatial_mllm_ros.model.preprocess import prepare_image
from spatial_mllm_ros.model.question_tree import QuestionTree
from spatial_mllm_ros.model.runtime import SpatialModel

SUBSET = Path(__file__).parent / "data" / "spatialmllm_tiny_subset"
QUESTIONS = [
    "Did the gripper move left or right?",
    "Did the gripper move up or down?",
    "Did the red cube move?",
    "Did the gripper move at all?",
    Question("Which point in Image-2 matches the dot in Image-1?", kind=QuestionKind.CHOICE),
    "Give the distance the gripper was moved.",
    Question("What is the robot doing?", kind=QuestionKind.FREE),
    "Did the gripper move left or right?",  # twice: both rows end on the same tree node
]


def test_tree_merges_shared_starts_and_masks_to_ancestors() -> None:
    tree = QuestionTree.build([[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3]])
    assert tree.tokens == [1, 2, 3, 4, 5] and tree.parents == [-1, 0, 1, 1, 0]
    assert tree.depths == [0, 1, 2, 2, 1] and tree.ends == [2, 3, 4, 2]
    assert tree.positions(10).tolist() == [[10, 11, 12, 12, 11]]
    mask = tree.attention_mask(2, torch.float32)[0, 0]
    assert mask.shape == (5, 7) and (mask[:, :2] == 0).all()  # every node sees the shared prefix
    seen = (mask[:, 2:] == 0).int().tolist()
    assert seen == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 1, 0], [1, 0, 0, 0, 1]]
    index, attn = tree.row_layout([1, 2], prefix_len=2)  # rows 1 and 2 as a left-padded batch
    assert index.tolist() == [[0, 1, 2, 3, 5], [0, 1, 0, 2, 6]]
    assert attn.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 1, 1]]
    with pytest.raises(ValueError):
        QuestionTree.build([[1], []])


@pytest.fixture(scope="module")
def models() -> dict[str, SpatialModel]:
    """The shipped model twice: questions as a token tree (lean last layer), and as a left-padded batch."""
    return {
        batch: SpatialModel.load(ModelConfig(device="cpu", vision_backends=("torch",), question_batch=batch))
        for batch in ("tree", "padded")
    }


def _frames() -> list[np.ndarray]:
    from spatial_mllm_ros.multispa.train.data import load_rgb

    return [load_rgb(SUBSET / "images" / n) for n in ("ep100003_00_f1.jpg", "ep100003_00_f2.jpg")]


def test_tree_batch_answers_equal_padded_batch_answers(models: dict[str, SpatialModel]) -> None:
    assert models["tree"].decoder.tree and not models["padded"].decoder.tree
    assert models["tree"].decoder.lean is not None and models["padded"].decoder.lean is None
    frames = _frames()
    tree, padded = (m.ask_many(frames, QUESTIONS, keys=["q@1", "q@2"]) for m in models.values())
    for a, b in zip(tree, padded):
        assert a.kind == b.kind and a.raw == b.raw and a.value == b.value
        if b.probabilities is None:
            assert a.probabilities is None
            continue
        assert set(a.probabilities) == set(b.probabilities)
        for k, p in b.probabilities.items():
            assert a.probabilities[k] == pytest.approx(p, abs=1e-5)
    assert tree[5].kind is QuestionKind.DISTANCE and tree[5].probabilities  # the digit tree went on
    assert tree[6].probabilities is None and tree[0].probabilities == tree[7].probabilities


def test_tree_answers_equal_each_question_alone_without_a_prefix_cache(
    models: dict[str, SpatialModel],
) -> None:
    """Closed-set probabilities against the model's own forward over each whole prompt, pixels in."""
    m = models["tree"]
    frames = _frames()
    asked = [q for q in QUESTIONS if not isinstance(q, Question)][:4]
    answers = m.ask_many(frames, asked, keys=["r@1", "r@2"])
    prepared = [prepare_image(f, m.spec) for f in frames]
    pixels = torch.cat([p.pixel_values for p in prepared])
    for q, ans in zip(asked, answers):
        kind = Question(q).resolved_kind()
        enc = m.prompts.encode(
            [p.n_tokens for p in prepared], task_description(kind), q, m.config.answer_prefix
        )
        with torch.no_grad():
            logits = m.model(input_ids=torch.tensor([enc.ids]), pixel_values=pixels).logits[0, -1]
        options = m._option_ids(tuple(ans.probabilities))
        ref = torch.softmax(logits[list(options.values())], -1).tolist()
        raw = dict(zip(options, ref))
        if m.calibration is not None:
            raw = m.calibration.apply(raw, ans.ood_score)
        assert max(raw, key=raw.get) == ans.value
        for k, p in raw.items():
            assert ans.probabilities[k] == pytest.approx(p, abs=1e-5)


def test_tree_runs_fewer_tokens_than_the_padded_batch(models: dict[str, SpatialModel]) -> None:
    m = models["tree"]
    rows = [
        m.prompts.encode([16, 16], task_description(Question(q).resolved_kind()), q, "`").question
        for q in QUESTIONS
        if not isinstance(q, Question)
    ]
    tree = QuestionTree.build(rows)
    assert len(tree.tokens) < 0.75 * sum(map(len, rows)) < len(rows) * max(map(len, rows))

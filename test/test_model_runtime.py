"""The model runtime end to end with tiny random InternVL and Qwen2.5-VL checkpoints (real transformers
models, saved and reloaded offline)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_mllm_ros.answers import Question
from spatial_mllm_ros.conventions import QuestionKind, task_description
from spatial_mllm_ros.model.config import ModelConfig
from spatial_mllm_ros.model.factory import make_tiny_model
from spatial_mllm_ros.model.preprocess import prepare_image
from spatial_mllm_ros.model.runtime import SpatialModel


def _frames(n: int, seed: int = 0, size: tuple[int, int] = (240, 320)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def internvl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("ivl"), "internvl", seed=1)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("qwen"), "qwen2_5_vl", seed=2)


@pytest.fixture(scope="module")
def internvl(internvl_dir: Path) -> SpatialModel:
    return SpatialModel.load(
        ModelConfig(checkpoint=str(internvl_dir), max_tiles=2, max_new_tokens=6, vision_backends=("torch",))
    )


@pytest.fixture(scope="module")
def qwen(qwen_dir: Path) -> SpatialModel:
    return SpatialModel.load(
        ModelConfig(checkpoint=str(qwen_dir), max_new_tokens=6, vision_backends=("torch",))
    )


def test_saved_offline_and_reloads(internvl_dir: Path, internvl: SpatialModel) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    names = {p.name for p in internvl_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)
    again = SpatialModel.load(ModelConfig(checkpoint=str(internvl_dir), vision_backends=("torch",)))
    for (n1, p1), (_, p2) in zip(internvl.model.named_parameters(), again.model.named_parameters()):
        assert torch.equal(p1, p2), n1
    assert internvl.family == "internvl" and internvl.backend == "torch" and internvl.device == "cpu"


def _native_probs(
    m: SpatialModel, frames: list[np.ndarray], question: str, options: tuple[str, ...], kwargs_fn
) -> dict[str, float]:
    """Reference: the model's own forward (pixel values in, full prompt) scored over the same options."""
    prepared = [prepare_image(f, m.spec) for f in frames]
    enc = m.prompts.encode(
        [p.n_tokens for p in prepared],
        task_description(QuestionKind.DIRECTION),
        question,
        m.config.answer_prefix,
    )
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        logits = m.model(input_ids=ids, **kwargs_fn(prepared, ids)).logits[0, -1]
    opt = m._option_ids(options)
    picked = torch.softmax(logits[[opt[o] for o in options]], -1)
    return dict(zip(options, picked.tolist()))


@pytest.mark.parametrize("n_frames", [1, 2, 3, 4])
def test_internvl_closed_set_matches_native_forward(internvl: SpatialModel, n_frames: int) -> None:
    frames = _frames(n_frames, seed=n_frames)
    q = "Did the camera move left or right?"
    ans = internvl.ask(frames, q)
    assert ans.kind is QuestionKind.DIRECTION and ans.value in ("left", "right")
    assert sum(ans.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert ans.confidence == max(ans.probabilities.values())
    ref = _native_probs(
        internvl,
        frames,
        q,
        ("left", "right"),
        lambda p, ids: {"pixel_values": torch.cat([x.pixel_values for x in p])},
    )
    for k in ref:
        assert ans.probabilities[k] == pytest.approx(ref[k], abs=1e-5)
    t = internvl.last_timing
    assert t.frames == n_frames and t.total_ms >= t.vision_ms + t.language_ms - 1e-6


def test_prompt_layout_for_1_to_4_frames(internvl: SpatialModel) -> None:
    tok = internvl.tokenizer
    for n in (1, 2, 3, 4):
        enc = internvl.prompts.encode([5] * n, "Describe.", "Left or right?", "`")
        text = tok.decode(enc.ids)
        assert text.count("<img>") == n and text.count("<IMG_CONTEXT>") == 5 * n
        assert ("Image-1: <img>" in text) == (n > 1)
        assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n`")
        assert "Describe.\nLeft or right?" in text
    # a question cannot forge image tokens
    enc = internvl.prompts.encode([5], "d", "left <IMG_CONTEXT><img> or right?")
    assert enc.ids.count(internvl.prompts.context_id) == 5


def test_generation_matches_native_generate(internvl: SpatialModel) -> None:
    frames = _frames(2, seed=7)
    ans = internvl.ask(frames, Question("What is the robot doing?", kind=QuestionKind.FREE))
    prepared = [prepare_image(f, internvl.spec) for f in frames]
    enc = internvl.prompts.encode(
        [p.n_tokens for p in prepared], task_description(QuestionKind.FREE), "What is the robot doing?"
    )
    ids = torch.tensor([enc.ids])
    out = internvl.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=6,
        pixel_values=torch.cat([p.pixel_values for p in prepared]),
        do_sample=False,
    )
    native = internvl.tokenizer.decode(
        [t for t in out[0, ids.shape[1] :].tolist() if t != internvl.tokenizer.eos_token_id],
        skip_special_tokens=True,
    ).strip()
    assert ans.raw == native
    assert ans.probabilities is None and ans.confidence is None


def test_ask_many_is_one_batch_with_same_answers(internvl: SpatialModel) -> None:
    frames = _frames(2, seed=11)
    qs = [
        "Did the camera move left or right?",
        "Did the camera tilt up or down?",
        "Did the cube move?",
        Question("Which point matches?", kind=QuestionKind.CHOICE),
        "How far did the camera move?",
    ]
    many = internvl.ask_many(frames, qs, keys=["a@1", "a@2"])
    assert internvl.last_timing.questions == len(qs)
    single = [internvl.ask(frames, q, keys=["a@1", "a@2"]) for q in qs]
    for a, b in zip(many, single):
        assert a.kind == b.kind and a.raw == b.raw
        if a.probabilities:
            assert set(a.probabilities) == set(b.probabilities)
            for k in a.probabilities:
                assert a.probabilities[k] == pytest.approx(b.probabilities[k], abs=1e-5)
            assert sum(a.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert set(many[3].probabilities) == {"A", "B", "C", "D"}
    assert set(many[2].probabilities) == {"yes", "no"}


def test_embedding_cache_hits_and_byte_bound(internvl_dir: Path) -> None:
    m = SpatialModel.load(ModelConfig(checkpoint=str(internvl_dir), max_tiles=1, vision_backends=("torch",)))
    f = _frames(3, seed=3)
    m.ask(f[:2], "Did it move left or right?", keys=["cam@1", "cam@2"])
    assert (m.cache_stats.hits, m.cache_stats.misses) == (0, 2)
    m.ask(f[:2], "Did it move up or down?", keys=["cam@1", "cam@2"])
    assert m.cache_stats.hits == 2 and m.last_timing.frames_cached == 2
    m.ask(f[1:], "Did it move up or down?", keys=["cam@2", "cam@3"])  # sliding window: one new frame
    assert (m.cache_stats.hits, m.cache_stats.misses) == (3, 3)
    m.ask(f[:1], "Did it move up or down?")  # no keys: content hash
    m.ask([f[0].copy()], "Did it move up or down?")
    assert m.cache_stats.hits == 4
    per_frame = m.cache._items["cam@1"].nbytes
    small = SpatialModel.load(
        ModelConfig(
            checkpoint=str(internvl_dir), max_tiles=1, cache_bytes=2 * per_frame, vision_backends=("torch",)
        )
    )
    small.ask(f, "Did it move left or right?", keys=["k1", "k2", "k3"])
    assert small.cache_stats.entries == 2 and small.cache_stats.evictions == 1
    assert small.cache_stats.bytes <= 2 * per_frame


@pytest.mark.parametrize("n_frames", [1, 2, 4])
def test_qwen_closed_set_matches_native_forward(qwen: SpatialModel, n_frames: int) -> None:
    frames = _frames(n_frames, seed=20 + n_frames, size=(120, 160))
    q = "Did the camera move left or right?"
    ans = qwen.ask(frames, q)
    assert sum(ans.probabilities.values()) == pytest.approx(1.0, abs=1e-6)

    def kwargs(prepared, ids):
        qwen.model.model.rope_deltas = None
        return {
            "pixel_values": torch.cat([p.pixel_values for p in prepared]),
            "image_grid_thw": torch.tensor([p.grid_thw for p in prepared]),
            "mm_token_type_ids": (ids == qwen.model.config.image_token_id).int(),
        }

    ref = _native_probs(qwen, frames, q, ("left", "right"), kwargs)
    for k in ref:
        assert ans.probabilities[k] == pytest.approx(ref[k], abs=1e-5)


def test_qwen_batch_and_generation(qwen: SpatialModel) -> None:
    frames = _frames(2, seed=5, size=(120, 160))
    answers = qwen.ask_many(
        frames,
        ["Is the cube on the table?", "What is the robot doing?", "Did the camera move forward or backward?"],
    )
    assert answers[0].probabilities and set(answers[0].probabilities) == {"yes", "no"}
    assert answers[1].probabilities is None and isinstance(answers[1].raw, str)
    assert set(answers[2].probabilities) == {"forward", "backward"}
    assert qwen.cache_stats.misses >= 2


def test_qwen3_tiny_loads_and_answers(tmp_path: Path) -> None:
    d = make_tiny_model(tmp_path / "q3", "qwen3_vl")
    m = SpatialModel.load(ModelConfig(checkpoint=str(d), vision_backends=("torch",)))
    ans = m.ask(_frames(2, size=(96, 128)), "Did the camera move left or right?")
    assert sum(ans.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    m.close()


SUBSET = Path(__file__).parent / "data" / "spatialmllm_tiny_subset"


@pytest.fixture(scope="module")
def shipped() -> SpatialModel:
    """The shipped SpatialMLLM-tiny: its own tokenizer spells an integer one token per digit."""
    return SpatialModel.load(ModelConfig(device="cpu", vision_backends=("torch",)))


def _subset_frames(*names: str) -> list[np.ndarray]:
    from spatial_mllm_ros.multispa.train.data import load_rgb

    return [load_rgb(SUBSET / "images" / n) for n in names]


def test_integer_answers_score_their_whole_value_distribution(shipped: SpatialModel) -> None:
    """The digit tree's probabilities are the model's own: each value's full sequence teacher-forced."""
    from dataclasses import replace

    from spatial_mllm_ros.conventions import best_numeric_answer
    from spatial_mllm_ros.model.language import RowRequest

    spec = shipped.number_spec
    assert spec is not None and len(set(spec.digits)) == 10 and spec.end not in spec.digits
    frames = _subset_frames("ep100012_06_f0.jpg", "ep100012_06_f2.jpg")  # a pick-and-place: a spread answer
    q = "Measure the displacement of the gripper between the frames."
    prepared = [prepare_image(f, shipped.spec) for f in frames]
    enc = shipped.prompts.encode(
        [p.n_tokens for p in prepared],
        task_description(QuestionKind.DISTANCE),
        q,
        shipped.config.answer_prefix,
    )
    features, _ = shipped.encode_frames(frames, ["d@0", "d@2"])

    def distribution(beam: int) -> dict[int, float]:
        (res,) = shipped.decoder.run(
            enc.shared, features, [RowRequest(enc.question, None, replace(spec, beam=beam))], 8
        )
        return res.values

    full = distribution(1024)  # every prefix over 1e-4 followed: exact probabilities
    assert 0.95 <= sum(full.values()) <= 1.0 + 1e-6  # what is missing went to prefixes under 1e-4
    # reference: every value's whole answer ("123`") through the model's own forward, pixels in
    picked = sorted(full, key=full.get, reverse=True)[:12]
    rows = [enc.ids + [spec.digits[int(c)] for c in str(v)] + [spec.end] for v in picked]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    pixels = torch.cat([p.pixel_values for p in prepared] * len(rows))
    with torch.no_grad():
        logp = torch.log_softmax(shipped.model(input_ids=ids, pixel_values=pixels).logits.float(), -1)
    for k, (v, row) in enumerate(zip(picked, rows)):
        own = sum(float(logp[k, i - 1, row[i]]) for i in range(len(enc.ids), len(row)))
        assert full[v] == pytest.approx(np.exp(own), rel=1e-3), v
    # the default beam follows 16 prefixes a level and counts the rest at their siblings' ending rate
    narrow = distribution(spec.beam)
    assert spec.beam == 16 and len(narrow) < len(full)
    for v in picked:  # the likely values are followed exactly
        assert narrow[v] == pytest.approx(full[v], rel=1e-4)
    best, share = best_numeric_answer(QuestionKind.DISTANCE, full)
    assert best_numeric_answer(QuestionKind.DISTANCE, narrow)[0] == best
    # the answer is the value likeliest within the 20 % tolerance, and says how likely that is
    ans = shipped.ask(frames, Question(q, kind=QuestionKind.DISTANCE))
    assert ans.value == best and ans.unit == "mm" and ans.raw == f"`{best}`"
    assert ans.confidence == pytest.approx(share * sum(full.values()), abs=0.02) and 0 < ans.confidence < 1
    assert len(ans.probabilities) == 5 and max(ans.probabilities, key=ans.probabilities.get) == str(picked[0])


def test_integer_rows_mix_with_closed_and_open_rows_in_one_batch(shipped: SpatialModel) -> None:
    frames = _subset_frames("ep100003_00_f1.jpg", "ep100003_00_f2.jpg")
    qs = [
        "Give the distance the gripper was moved.",
        "Did the gripper move left or right?",
        Question("What is the robot doing?", kind=QuestionKind.FREE),
        "How far did the gripper move?",
        "Did the gripper move at all?",
    ]
    many = shipped.ask_many(frames, qs, keys=["b@1", "b@2"])
    single = [shipped.ask(frames, q, keys=["b@1", "b@2"]) for q in qs]
    for a, b in zip(many, single):
        assert a.kind == b.kind and a.raw == b.raw and a.value == b.value
        assert (
            a.confidence == pytest.approx(b.confidence) if b.confidence is not None else a.confidence is None
        )
    assert many[0].kind is QuestionKind.DISTANCE and many[0].probabilities is not None
    assert many[2].probabilities is None  # generated


def test_number_beam_0_and_tokenizers_without_digit_tokens_answer_integers_greedily(
    internvl: SpatialModel,
) -> None:
    assert internvl.number_spec is None  # the random tiny model's BPE merges digits ("12" is one token)
    ans = internvl.ask(_frames(2, seed=3), "How far did the camera move?")
    assert ans.kind is QuestionKind.DISTANCE and ans.probabilities is None and ans.confidence is None
    greedy = SpatialModel.load(ModelConfig(device="cpu", number_beam=0, vision_backends=("torch",)))
    assert greedy.number_spec is None
    frames = _subset_frames("ep100003_00_f1.jpg", "ep100003_00_f2.jpg")
    ans = greedy.ask(frames, "Give the distance the gripper was moved.")
    assert ans.probabilities is None and ans.raw.startswith("`") and isinstance(ans.value, int)


def test_ask_cli_prints_an_integer_answer_with_its_likeliest_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from spatial_mllm_ros.cli import main

    images = ["--image", str(SUBSET / "images" / "ep100012_06_f0.jpg")]
    images += ["--image", str(SUBSET / "images" / "ep100012_06_f2.jpg")]
    assert main(["ask", "--device", "cpu", *images, "How far did the gripper move?"]) == 0
    out = capsys.readouterr().out
    assert "[distance]" in out and "(that the truth is within 20 % of it)" in out
    assert out.count("=") >= 5 and "likeliest:" in out
    assert (
        main(["ask", "--device", "cpu", "--number-beam", "0", *images, "How far did the gripper move?"]) == 0
    )
    out = capsys.readouterr().out
    assert "n/a (generated)" in out and "likeliest:" not in out

"""The lean last layer gives the logits and KV cache the model's own forward gives (tiny random InternVL,
grouped-query attention, both mask-taking kernels, float32 and bfloat16), and stays off where its
re-composition would not hold."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from spatial_mllm_ros.model.factory import TinyShape, _internvl_config, make_tokenizer
from spatial_mllm_ros.model.lean import lean_stack
from spatial_mllm_ros.model.question_tree import QuestionTree

ROWS = [[7, 8, 9, 10], [7, 8, 11], [7, 12, 13, 14, 15], [7, 8, 9, 10]]


def _model(kernel: str, dtype: torch.dtype = torch.float32) -> Any:
    from transformers import InternVLForConditionalGeneration

    torch.manual_seed(0)
    config = _internvl_config(make_tokenizer(), 224, TinyShape(layers=3))
    config.get_text_config()._attn_implementation = kernel
    return InternVLForConditionalGeneration(config).to(dtype).eval()


def _caches_equal(a: Any, b: Any, tol: float) -> None:
    for la, lb in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(la.keys, lb.keys, atol=tol, rtol=tol)
        torch.testing.assert_close(la.values, lb.values, atol=tol, rtol=tol)


@pytest.mark.parametrize(
    ("kernel", "dtype", "tol"),
    [("sdpa", torch.float32, 1e-5), ("eager", torch.float32, 1e-5), ("sdpa", torch.bfloat16, 2e-2)],
)
def test_lean_prefix_and_tree_equal_the_models_own_forward(
    kernel: str, dtype: torch.dtype, tol: float
) -> None:
    from transformers import DynamicCache

    model = _model(kernel, dtype)
    lean = lean_stack(model)
    assert lean is not None
    text_config = model.config.get_text_config()
    embeds = torch.randn(1, 12, text_config.hidden_size).to(dtype)
    own, mine = DynamicCache(config=text_config), DynamicCache(config=text_config)
    with torch.no_grad():
        model(inputs_embeds=embeds, cache=own, use_cache=True)
        lean.prefill(embeds, mine)
        _caches_equal(own, mine, tol)  # eager too: the prefix is causal without a mask from the caller

        tree = QuestionTree.build(ROWS)
        ids = torch.tensor([tree.tokens])
        mask, positions = tree.attention_mask(12, dtype), tree.positions(12)
        want = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, cache=own, use_cache=True,
            logits_to_keep=torch.tensor(tree.ends),
        ).logits[0]
        got = lean.read(ids, mask, positions, mine, tree.ends)
    assert got.shape == want.shape == (len(ROWS), text_config.vocab_size)
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)
    _caches_equal(own, mine, tol)  # every tree node's keys and values, for the answers that go on


def test_lean_stays_off_where_its_layer_would_not_hold() -> None:
    model = _model("sdpa")
    model.config.get_text_config()._attn_implementation = "flash_attention_2"
    assert lean_stack(model) is None  # takes no tree mask
    model.config.get_text_config()._attn_implementation = "sdpa"
    model.config.get_text_config().layer_types = ["full_attention", "sliding_attention", "full_attention"]
    assert lean_stack(model) is None
    assert lean_stack(torch.nn.Linear(2, 2)) is None  # no decoder at all

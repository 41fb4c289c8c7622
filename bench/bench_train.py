"""Training throughput: the tiny recipe on CPU (samples/s, tokens/s), and LoRA MFU on the InternVL2-8B shape
with --device cuda.

CPU: a stage-2 step of SpatialMLLM-tiny's shape (vision tower frozen) three ways, in the same run:
  baseline  the generic trainer's forward (every question re-encodes its frames: model(**batch))
  tiny      the recipe's forward (every frame encoded once before training, projector + LM per step)
  tiny bf16 the same under the recipe's bfloat16 autocast (on only where the CPU has native bf16)
and prints the ratios. CUDA: forward+backward of LoRA r16 on a random InternVL2-8B-shaped model (bf16,
gradient checkpointing), MFU = 4 * N_params * tokens / time / peak (frozen weights: no weight gradients).

  .venv/bin/python bench/bench_train.py            # ~1 min on 2 cores
  .venv/bin/python bench/bench_train.py --device cuda --peak-tflops 989
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from spatial_mllm_ros.conventions import QuestionKind, build_prompt, task_description
from spatial_mllm_ros.model.prompts import PromptEncoder
from spatial_mllm_ros.multispa.train.questions import Question
from spatial_mllm_ros.multispa.train.tiny import TinyRecipe
from spatial_mllm_ros.multispa.train.tiny.bank import Item
from spatial_mllm_ros.multispa.train.tiny.episodes import EpisodeData
from spatial_mllm_ros.multispa.train.tiny.network import (
    bf16_autocast,
    make_model,
    make_tokenizer,
    native_bf16,
    question_corpus,
)
from spatial_mllm_ros.multispa.train.tiny.stage2 import encode_frames, forward_items, freeze_vision_tower

QUESTION = "Did the gripper move left, right, up, down, forward or backward?"


def cpu_bench(steps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    recipe = TinyRecipe()
    tok = make_tokenizer(question_corpus([]), 512)
    model = make_model(tok, recipe)
    prompts = PromptEncoder(tok, "internvl")
    n_tok = (recipe.image_size // recipe.patch_size) ** 2 // 4
    per_pair = recipe.questions_per_pair
    pairs = recipe.batch_questions // per_pair
    rng = np.random.default_rng(0)
    ep = EpisodeData(
        "bench",
        torch.from_numpy(rng.normal(size=(2 * pairs, 3, recipe.image_size, recipe.image_size))).half(),
        None,
        None,
        None,
        None,
        {},
        [],
    )
    items = []
    for p in range(pairs):
        for _ in range(per_pair):
            prompt = build_prompt(2, task_description(QuestionKind.DIRECTION), QUESTION)
            ids, labels = prompts.encode_training([n_tok, n_tok], prompt, "`left`")
            items.append(
                Item(
                    0,
                    (2 * p, 2 * p + 1),
                    ids,
                    labels,
                    Question("bench", QuestionKind.DIRECTION, "", QUESTION, "`left`", 0, 1, {}),
                )
            )
    tokens = sum(len(i.ids) for i in items)
    opt = torch.optim.AdamW(freeze_vision_tower(model), lr=1e-4)
    feats = encode_frames(model, [ep])
    pad, img = int(tok.pad_token_id), int(model.config.image_token_id)

    def baseline() -> None:
        width = max(len(i.ids) for i in items)
        ids = torch.full((len(items), width), pad)
        labels = torch.full((len(items), width), -100)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for r, it in enumerate(items):
            ids[r, : len(it.ids)] = torch.tensor(it.ids)
            labels[r, : len(it.ids)] = torch.tensor(it.labels)
            mask[r, : len(it.ids)] = 1
        pix = torch.cat([ep.pixels[list(it.frames)] for it in items]).float()
        model(input_ids=ids, attention_mask=mask, pixel_values=pix, labels=labels).loss.backward()

    def shared() -> None:
        forward_items(model, feats, items, pad, img)[0].loss.backward()

    def shared_bf16() -> None:
        with bf16_autocast(recipe, torch.device("cpu")):
            loss = forward_items(model, feats, items, pad, img)[0].loss
        loss.backward()

    results = {}
    ways = [("baseline (frames per question)", baseline), ("tiny recipe (frames encoded once)", shared)]
    if native_bf16():
        ways.append(("tiny recipe + bf16 autocast", shared_bf16))
    else:
        print("bf16 autocast: off on this CPU (no native bfloat16 matmuls); the recipe runs fp32 here")
    for name, fn in ways:
        fn()  # warm-up
        opt.zero_grad()
        t = time.perf_counter()
        for _ in range(steps):
            fn()
            opt.step()
            opt.zero_grad()
        dt = (time.perf_counter() - t) / steps
        results[name] = dt
        print(
            f"{name:32s} {len(items) / dt:8.1f} samples/s {tokens / dt:9.0f} tokens/s "
            f"({dt * 1000:.0f} ms/step, "
            f"{len(items)} questions over {2 * pairs} frames)"
        )
    (_, base), *others = results.items()
    ratios = ", ".join(f"{name.split(' (')[0]} {base / dt:.2f}x" for name, dt in others)
    print(f"samples/s against the baseline: {ratios}  (torch {torch.__version__}, {threads} thread(s))")


def cuda_bench(steps: int, batch: int, seq: int, peak_tflops: float) -> None:
    if not torch.cuda.is_available():
        print("--device cuda: no CUDA device on this machine; the InternVL2-8B LoRA MFU benchmark is skipped")
        return
    from peft import LoraConfig, get_peft_model

    from spatial_mllm_ros.model.factory import make_real_shape_model

    model, _ = make_real_shape_model("internvl2-8b", device="cuda", dtype=torch.bfloat16)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=32,
            target_modules=r".*language_model.*\.(q_proj|"
            r"k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        ),
    )
    n_params = sum(p.numel() for p in model.parameters())
    vocab = model.config.text_config.vocab_size
    ids = torch.randint(0, min(vocab, 90000), (batch, seq), device="cuda")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=4e-5)
    for k in range(steps + 2):
        if k == 2:
            torch.cuda.synchronize()
            t = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    flops = 4 * n_params * batch * seq  # forward 2N + activation gradients 2N per token; frozen weights
    print(
        f"InternVL2-8B shape LoRA r16: {batch * seq / dt:.0f} tokens/s, {flops / dt / 1e12:.1f} TFLOP/s, "
        f"MFU {100 * flops / dt / (peak_tflops * 1e12):.1f}% of {peak_tflops} TFLOP/s "
        f"({torch.cuda.get_device_name()})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4, help="cuda: sequences per step")
    ap.add_argument("--seq", type=int, default=2048, help="cuda: tokens per sequence")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="cuda: dense bf16 peak (H100 SXM: 989)")
    ap.add_argument("--quick", action="store_true", help="2 steps")
    args = ap.parse_args()
    steps = 2 if args.quick else args.steps
    if args.device == "cuda":
        cuda_bench(steps, args.batch, args.seq, args.peak_tflops)
    else:
        cpu_bench(steps, args.threads)


if __name__ == "__main__":
    main()

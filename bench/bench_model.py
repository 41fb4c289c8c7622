"""Model-runtime timings, each as a ratio to a baseline measured in the same run.

(a) 8 questions over the same 2 frames (one ask_many batch) vs 1 question; target <= 2x (naive: 8x).
(b) onnxruntime (fused graph; and its int8 form) vs torch vision encoding on CPU: tiny model and
    InternVL3-1B shape (float32), speed-up and max abs output difference; then which backend the measured
    rule (model.measure_backends) takes.
(c) time-to-answer for 2 frames on CPU at InternVL3-1B shape (bf16), split into vision and language.
(d) --device cuda: InternVL2-8B shape, 2 frames x 7 tiles, time-to-answer next to the GPU's physical
    limit computed here (FLOPs / peak, bytes / bandwidth); without a GPU it says so and skips.
(e) a distance question on the shipped SpatialMLLM-tiny: the digit tree (number_beam 16, the default)
    vs greedy digits (number_beam 0), frames cached so the ratio is the language side's.
(f) per-question latency of the shipped SpatialMLLM-tiny, 1 vs 8 questions over the same 2 frames (cold
    embedding cache, and frames cached: the language side alone), questions as a left-padded batch
    (model.question_batch padded, the way before the token tree) vs a token tree (the default); the
    bench's 8 mixed questions and a rubric's 8.

Default run: tiny models (a, b, e, f) + InternVL3-1B shape at one 448-px tile per frame (a, c closed-set),
one repetition each; --quick: tiny models only; --full: also 1B-shape generation and the 1B-shape ONNX
export with onnxruntime vs torch (minutes on 2 shared cores). Times are wall clock, medians of interleaved
rounds (the machine is shared); run with OMP_NUM_THREADS=1 for single-thread figures.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatial_mllm_ros.answers import Question
from spatial_mllm_ros.conventions import QuestionKind
from spatial_mllm_ros.model.config import ModelConfig
from spatial_mllm_ros.model.factory import REAL_SHAPES, make_real_shape_model, make_tiny_model
from spatial_mllm_ros.model.preprocess import prepare_image
from spatial_mllm_ros.model.runtime import SpatialModel
from spatial_mllm_ros.model.vision import OnnxRuntimeBackend, TorchBackend, select_backend

QUESTIONS = [
    "Did the camera move left or right?",
    "Did the camera move up or down?",
    "Did the camera move forward or backward?",
    "Did the gripper close?",
    "Is the red cube still on the table?",
    Question("Which point in Image-2 matches the dot in Image-1?", kind=QuestionKind.CHOICE),
    "Did the camera rotate left or right?",
    "Did the blue cube move?",
]
RUBRIC_QUESTIONS = [  # a reward rubric's step checks: yes/no questions about each object and direction
    f"Did the {thing} move {way}?"
    for thing in ("gripper", "red cube")
    for way in ("left", "right", "forward", "backward")
]
# The shipped model alone on CPU with torch: the benches' random frames would go to its shift expert.
SHIPPED_ALONE: dict[str, Any] = {"device": "cpu", "vision_backends": ("torch",), "shift_expert": "none"}
# Dense bf16 peak FLOP/s and memory bandwidth (vendor datasheets) for the physical-limit estimate.
GPU_PEAKS: dict[str, tuple[float, float]] = {
    "H100": (989e12, 3.35e12),
    "H200": (989e12, 4.8e12),
    "A100": (312e12, 2.0e12),
    "L4": (121e12, 0.3e12),
    "Orin": (42.5e12, 0.2048e12),  # AGX Orin 64GB: Ampere GPU bf16 dense, LPDDR5
}


def frames(n: int, h: int = 480, w: int = 640, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1)
    return [(base + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8) for _ in range(n)]


def median_ms(fn: Callable[[], Any], reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def bench_batch(model: SpatialModel, label: str, reps: int, warmup: bool = True) -> None:
    """(a): frames encoded once, questions as one batch; cold cache each time so vision counts in both."""
    f = frames(2)

    def one() -> None:
        model.cache.clear()
        model.ask(f, QUESTIONS[0])

    def eight() -> None:
        model.cache.clear()
        model.ask_many(f, QUESTIONS)

    if warmup:
        one(), eight()
    pairs = []
    for _ in range(reps):  # alternate so machine load hits both alike; median of per-round ratios
        t = time.perf_counter()
        one()
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        eight()
        pairs.append((t1 * 1e3, (time.perf_counter() - t) * 1e3))
    t1 = statistics.median(p[0] for p in pairs)
    t8 = statistics.median(p[1] for p in pairs)
    ratio = statistics.median(p[1] / p[0] for p in pairs)
    timing = model.last_timing
    print(
        f"(a) {label:<22} 1 question {t1:8.1f} ms | 8 questions {t8:8.1f} ms | ratio {ratio:5.2f}x "
        f"(target <= 2x, naive 8x) | last batch: vision {timing.vision_ms:.0f} ms, "
        f"language {timing.language_ms:.0f} ms"
    )


def bench_vision(model: Any, label: str, workdir: Path, tiles: int, reps: int) -> None:
    """(b): the same tiles through torch, onnxruntime and onnxruntime-int8 (float32 in and out)."""
    from spatial_mllm_ros.model.export import export_onnx
    from spatial_mllm_ros.model.preprocess import PreparedImage

    fp32 = model.float()
    t = time.perf_counter()
    result = export_onnx(fp32, workdir, check_tiles=(1,))
    export_s = time.perf_counter() - t
    backends = {
        "torch": TorchBackend(fp32, "internvl"),
        "onnxruntime": OnnxRuntimeBackend(fp32, "internvl", workdir),
        "onnxruntime-int8": OnnxRuntimeBackend(fp32, "internvl", workdir, int8=True),
    }
    size = fp32.config.vision_config.image_size[0]
    img = PreparedImage(torch.randn(tiles, 3, size, size), tiles * 256, (tiles, 1))
    times = interleaved_ms({name: (lambda b=b: b.encode([img])) for name, b in backends.items()}, reps)
    ref = backends["torch"].encode([img])[0].embeds
    base = times["torch"]
    threads = torch.get_num_threads()
    print(f"(b) {label:<22} {tiles} tiles, {threads} thread(s): torch {base.wall:.1f} ms wall, "
          f"{base.cpu:.1f} ms CPU (export {export_s:.0f} s, check {result.max_abs_diff:.1e} / "
          f"{result.ort_max_abs_diff:.1e})")
    for name in ("onnxruntime", "onnxruntime-int8"):
        diff = (backends[name].encode([img])[0].embeds - ref).abs().max().item()
        t = times[name]
        print(f"    {name:<17} {t.wall:8.1f} ms wall, {t.cpu:8.1f} ms CPU | torch's time / its: "
              f"{base.wall / t.wall:4.2f}x wall, {base.cpu / t.cpu:4.2f}x CPU (target >= 1.5x) | "
              f"max abs diff {diff:.1e} (outputs up to {ref.abs().max().item():.2f})")
        backends[name].close()
    flops = counted_flops(lambda: backends["torch"].encode([img]))
    tower, gemm = flops / base.wall / 1e6, gemm_gflops()
    print(f"    fp32 ceiling: torch runs the tower's {flops / 1e9:.2f} GFLOP at {tower:.0f} GFLOP/s, a "
          f"1024x1024x4096 GEMM here at {gemm:.0f} GFLOP/s ({threads} thread(s)): no fp32 backend can be "
          f"more than {gemm / tower:4.2f}x faster than torch on this shape")
    chosen, skipped = select_backend(("onnxruntime", "torch"), fp32, "internvl", workdir)
    print(f"    measured rule takes {chosen.name}" + (f": {skipped['onnxruntime']}" if skipped else ""))


def counted_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call (matmuls, convolutions, attention), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_attention(q: Any, k: Any, v: Any, *_: Any, out_shape: Any = None, **__: Any) -> int:
        return sdpa_flop_count(q, k, v)

    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default  # not in torch's table
    mode = FlopCounterMode(display=False, custom_mapping={cpu_sdpa: cpu_attention})
    with torch.inference_mode(), mode:
        fn()
    return mode.get_total_flops()


def gemm_gflops(reps: int = 10) -> float:
    """The fastest of `reps` float32 GEMMs (1024x1024 by 1024x4096, a ViT MLP's shape), GFLOP/s: the
    rate a backend would need on every operation to match it, so their ratio bounds any speed-up."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 4096)
    best = math.inf
    for _ in range(reps + 1):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 1024 * 1024 * 4096 / best / 1e9


@dataclass(frozen=True)
class Clocks:
    """Median ms of one function: wall clock, and this process's CPU time (steadier on a loaded machine;
    the same as wall for one thread when nothing else competes)."""

    wall: float
    cpu: float


def interleaved_ms(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, Clocks]:
    """Time each function over `reps` rounds, all run once per round (one warm-up round), medians."""
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(reps + 1):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            if rep:
                wall[name].append((time.perf_counter() - t) * 1e3)
                cpu[name].append((time.process_time() - c) * 1e3)
    return {name: Clocks(statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def bench_answer(model: SpatialModel, label: str, reps: int, generated: bool) -> None:
    """(c): closed-set (and generated) answers for 2 fresh frames (cold cache), no warm-up call."""
    f = frames(2, seed=3)
    parts: dict[str, tuple[float, float, float]] = {}
    cases = [("closed-set", QUESTIONS[0])]
    if generated:
        cases.append(("generated", Question("How far did the camera move?")))
    for name, q in cases:

        def run(q: Any = q) -> None:
            model.cache.clear()
            model.ask(f, q)

        total = median_ms(run, reps, warmup=0)
        parts[name] = (total, model.last_timing.vision_ms, model.last_timing.language_ms)
    for name, (total, vis, lang) in parts.items():
        print(
            f"(c) {label:<22} 2 frames {name:<10} {total:8.1f} ms "
            f"(vision {vis:.0f} ms, language {lang:.0f} ms)"
        )


def physical_limit(
    shape: str, tiles: int, prompt_tokens: int, new_tokens: int, peak: tuple[float, float]
) -> dict[str, float]:
    """Lower bounds (ms) from FLOPs / peak and bytes / bandwidth for vision, prefill and decode."""
    spec = REAL_SHAPES[shape]
    v, t = spec["vision"], spec["text"]
    vt = (v["image_size"][0] // v["patch_size"][0]) ** 2 + 1
    vit_params = v["num_hidden_layers"] * (
        4 * v["hidden_size"] ** 2 + 2 * v["hidden_size"] * v["intermediate_size"]
    )
    vision_flops = tiles * (2 * vit_params * vt + 4 * v["num_hidden_layers"] * vt**2 * v["hidden_size"])
    h, layers = t["hidden_size"], t["num_hidden_layers"]
    kv = h * t["num_key_value_heads"] // t["num_attention_heads"]
    llm_params = layers * (2 * h * h + 2 * h * kv + 3 * h * t["intermediate_size"]) + t["vocab_size"] * h
    prefill_flops = 2 * llm_params * prompt_tokens + 4 * layers * prompt_tokens**2 * h
    flops_peak, bandwidth = peak
    bytes_per_token = 2 * llm_params + 2 * 2 * layers * kv * prompt_tokens  # bf16 weights + KV cache
    return {
        "vision_ms": vision_flops / flops_peak * 1e3,
        "prefill_ms": max(prefill_flops / flops_peak, 2 * llm_params / bandwidth) * 1e3,
        "decode_ms": new_tokens * bytes_per_token / bandwidth * 1e3,
        "vision_tflop": vision_flops / 1e12,
        "prefill_tflop": prefill_flops / 1e12,
    }


def bench_cuda(reps: int) -> None:
    """(d): InternVL2-8B shape on the GPU, 2 frames x 7 tiles, next to the physical limit."""
    tiles, new_tokens = 14, 8
    prompt = tiles * 256 + 2 * 4 + 60
    if not torch.cuda.is_available():
        print(
            "(d) --device cuda: no CUDA device on this machine: (d) not run. Reference physical limits "
            "(computed, not measured) for InternVL2-8B, 2 frames x 7 tiles:"
        )
        for gpu, peak in GPU_PEAKS.items():
            lim = physical_limit("internvl2-8b", tiles, prompt, new_tokens, peak)
            print(
                f"    {gpu:<5} vision >= {lim['vision_ms']:6.1f} ms ({lim['vision_tflop']:.1f} TFLOP), "
                f"prefill >= "
                f"{lim['prefill_ms']:6.1f} ms ({lim['prefill_tflop']:.1f} TFLOP), {new_tokens} tokens >= "
                f"{lim['decode_ms']:6.1f} ms"
            )
        return
    name = torch.cuda.get_device_name(0)
    peak = next((p for k, p in GPU_PEAKS.items() if k.lower() in name.lower()), GPU_PEAKS["H100"])
    model, tok = make_real_shape_model("internvl2-8b", device="cuda", dtype=torch.bfloat16)
    sm = SpatialModel.from_model(
        model, tok, ModelConfig(max_tiles=6, vision_backends=("torch",), max_new_tokens=new_tokens)
    )
    f = frames(2, 968, 1296)
    assert sum(prepare_image(x, sm.spec).n_tiles for x in f) == tiles
    for name_q, q in (("closed-set", QUESTIONS[0]), ("generated", Question("How far did the camera move?"))):

        def run(q: Any = q) -> None:
            sm.cache.clear()
            sm.ask(f, q)
            torch.cuda.synchronize()

        total = median_ms(run, reps, warmup=2)
        lim = physical_limit("internvl2-8b", tiles, prompt, new_tokens if name_q == "generated" else 0, peak)
        bound = lim["vision_ms"] + lim["prefill_ms"] + lim["decode_ms"]
        print(
            f"(d) {name} InternVL2-8B {name_q:<10} {total:8.1f} ms (vision {sm.last_timing.vision_ms:.0f}, "
            f"language {sm.last_timing.language_ms:.0f}) | physical limit {bound:.1f} ms "
            f"(vision {lim['vision_ms']:.1f}, prefill {lim['prefill_ms']:.1f}, "
            f"decode {lim['decode_ms']:.1f}) | "
            f"{total / bound:.1f}x the limit"
        )


def bench_numbers(reps: int) -> None:
    """(e): what weighing the whole value distribution of an integer answer costs against greedy digits."""
    f = frames(2, 240, 320, seed=5)
    q = Question("How far did the gripper move, in millimetres?", kind=QuestionKind.DISTANCE)
    models = {
        beam: SpatialModel.load(ModelConfig(number_beam=beam, **SHIPPED_ALONE))
        for beam in (0, 16)
    }
    for m in models.values():  # warm up and fill the embedding cache: the language side is what differs
        m.ask(f, q, keys=["e@0", "e@1"])
    pairs = []
    for _ in range(reps):
        t = [median_ms(lambda m=m: m.ask(f, q, keys=["e@0", "e@1"]), 1, warmup=0) for m in models.values()]
        pairs.append(t)
    greedy = statistics.median(p[0] for p in pairs)
    tree = statistics.median(p[1] for p in pairs)
    ratio = statistics.median(p[1] / p[0] for p in pairs)
    print(
        f"(e) shipped tiny, distance  greedy digits {greedy:6.1f} ms | digit tree (beam 16) {tree:6.1f} ms "
        f"| ratio {ratio:5.2f}x"
    )


def bench_questions(reps: int) -> None:
    """(f): per-question latency, 1 vs 8 questions: a padded batch (before), the token tree through the
    model's own forward (the last stop), and the tree with the lean last layer (the default)."""
    f = frames(2, 240, 320, seed=6)
    models = {
        batch: SpatialModel.load(ModelConfig(question_batch=batch, **SHIPPED_ALONE))
        for batch in ("padded", "tree")
    }
    models["tree-full"] = SpatialModel.load(
        ModelConfig(question_batch="tree", **SHIPPED_ALONE)
    )
    models["tree-full"].decoder.lean = None  # the tree through the model's own forward
    assert models["tree"].decoder.lean is not None, "the shipped model should run the lean last layer"

    def ask(model: SpatialModel, questions: list, cold: bool) -> Callable[[], Any]:
        def run() -> None:
            if cold:  # the frames are encoded in every call, as for a new camera pair
                model.cache.clear()
            model.ask_many(f, questions, keys=["f@0", "f@1"])

        return run

    for label, questions in (("bench's 8 mixed", QUESTIONS), ("rubric's 8 yes/no", RUBRIC_QUESTIONS)):
        for cold in (True, False):
            runs = {f"{b} {n}": ask(m, questions[:n], cold) for b, m in models.items() for n in (1, 8)}
            times = interleaved_ms(runs, reps)
            for clock in ("wall", "cpu"):
                t = {k: getattr(v, clock) for k, v in times.items()}
                print(
                    f"(f) {label}, {'cold' if cold else 'cached frames'}, {clock} ms per question: padded "
                    f"1 q {t['padded 1']:5.1f}, 8 q {t['padded 8'] / 8:5.1f} | tree, own forward 1 q "
                    f"{t['tree-full 1']:5.1f}, 8 q {t['tree-full 8'] / 8:5.1f} | tree, lean last layer 1 q "
                    f"{t['tree 1']:5.1f}, 8 q {t['tree 8'] / 8:5.1f} | at 8: tree vs padded "
                    f"{t['padded 8'] / t['tree-full 8']:4.2f}x, lean tree vs padded "
                    f"{t['padded 8'] / t['tree 8']:4.2f}x (target >= 2x); lean vs own forward "
                    f"{t['tree-full 8'] / t['tree 8']:4.2f}x"
                )
        answers = [m.ask_many(f, questions) for m in models.values()]
        for other in answers[1:]:
            assert [a.raw for a in answers[0]] == [a.raw for a in other], "padded and tree answers differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model only")
    parser.add_argument(
        "--full", action="store_true", help="also 1B-shape generation, ONNX export and ORT-vs-torch (slow)"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=("e", "f"), help="run only this shipped-model part")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    if args.device == "cuda":
        bench_cuda(args.reps)
        return
    if args.only:
        {"e": bench_numbers, "f": bench_questions}[args.only](args.reps * 5)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = make_tiny_model(work / "tiny", "internvl", image_size=224)
        tiny = SpatialModel.load(ModelConfig(checkpoint=str(ckpt), max_tiles=6, vision_backends=("torch",)))
        bench_batch(tiny, "tiny (224px, 6 tiles)", args.reps * 3)
        bench_vision(tiny.model, "tiny", work / "tiny-onnx", 14, args.reps * 3)
        del tiny
        bench_numbers(args.reps * 5)
        bench_questions(args.reps * 5)
        if args.quick:
            return
        model, tok = make_real_shape_model("internvl3-1b", device="cpu", dtype=torch.bfloat16)
        sm = SpatialModel.from_model(
            model,
            tok,
            ModelConfig(max_tiles=1, vision_backends=("torch",), max_new_tokens=8),
            name="internvl3-1b-shape",
        )
        print(
            f"    InternVL3-1B shape: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M "
            "parameters, bf16"
        )
        heavy_reps = args.reps if args.full else 1  # one 1B-shape forward is tens of seconds on 2 cores
        bench_answer(sm, "InternVL3-1B (bf16)", heavy_reps, generated=args.full)
        bench_batch(sm, "InternVL3-1B (bf16)", heavy_reps, warmup=False)
        del sm
        gc.collect()
        if args.full:
            bench_vision(model, "InternVL3-1B (fp32)", work / "1b-onnx", 2, heavy_reps)
        else:
            print("(b) InternVL3-1B: run with --full (ONNX export of the 300M vision tower takes minutes)")
        bench_cuda(args.reps)


if __name__ == "__main__":
    main()

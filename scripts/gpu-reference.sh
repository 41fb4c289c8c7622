#!/usr/bin/env bash
# The checks that need a CUDA GPU (CI has none): the GPU benchmarks and the SpatialMLLM-tiny reference
# checkpoint, the tiny recipe trained on the GPU with a finer patch grid. Each step writes into OUT.
#
#   scripts/gpu-reference.sh bench OUT          LoRA MFU on the InternVL2-8B shape (bench_train.py) and
#                                               time-to-answer against the physical limit (bench_model.py d)
#   scripts/gpu-reference.sh train OUT [FLAG..] the reference run, its evaluation on the held-out benchmark,
#                                               the model packed in parts of at most 15 MB; FLAGs go on to
#                                               `spatial-mllm train --recipe tiny` (e.g. --set lr=5e-4)
#
# Environment: PYTHON (default python3, with CUDA torch and the package's requirements), RUN (the
# recipe's output folder, default runs/gpu-reference), MINUTES (the recipe's wall clock, rendering
# included, default 6), DEVICE (default cuda; `DEVICE=cpu scripts/gpu-reference.sh train OUT --quick`
# smoke-tests the steps on a CPU). Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STEP=${1:?usage: gpu-reference.sh bench|train OUT [FLAG...]}
OUT=${2:?usage: gpu-reference.sh bench|train OUT [FLAG...]}
shift 2
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MUJOCO_GL=${MUJOCO_GL:-egl}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

"$PY" - "$DEVICE" <<'PYEOF'
import importlib.util
import sys

wanted = ("torch", "transformers", "tokenizers", "safetensors", "peft", "mujoco", "rosbags", "cv2", "yaml",
          "tqdm", "matplotlib")
missing = [m for m in wanted if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu-reference: missing Python modules {missing}")
import torch

from spatial_mllm_ros.model.errors import ModelLoadError
from spatial_mllm_ros.model.loading import check_transformers

try:
    check_transformers()  # before the run, not at its evaluation
except ModelLoadError as exc:
    sys.exit(f"gpu-reference: {exc}")
if sys.argv[1].startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"gpu-reference: no CUDA device here (torch {torch.__version__}); DEVICE=cpu for a smoke run")
where = torch.cuda.get_device_name() if sys.argv[1].startswith("cuda") else "cpu"
print(f"torch {torch.__version__} on {where}")
PYEOF

case $STEP in
  bench)
    "$PY" bench/bench_train.py --device cuda 2>&1 | tee "$OUT/bench_train_cuda.txt"
    "$PY" bench/bench_model.py --device cuda 2>&1 | tee "$OUT/bench_model_cuda.txt"
    ;;
  train)
    RUN=${RUN:-runs/gpu-reference}
    # 168-px tiles in 14-px patches: a 12x12 grid, 36 tokens per frame (2.25x the 112-px recipe's), which
    # a CPU hour cannot afford; the question stage's cosine runs until the clock ends it. The log keeps
    # the progress bars; the terminal gets its end (the summary) or the error.
    "$PY" -m spatial_mllm_ros train --recipe tiny --device "$DEVICE" --output "$RUN" \
      --minutes "${MINUTES:-6}" --set workers="$(nproc)" --set threads=8 --set image_size=168 \
      --set episode.grid=12 --set stage2_steps=20000 "$@" >"$OUT/train.log" 2>&1 \
      || { tail -c 4000 "$OUT/train.log"; exit 1; }
    tail -c 2500 "$OUT/train.log"
    cp "$RUN/summary.json" "$OUT/summary.json"
    "$PY" -m spatial_mllm_ros evaluate --checkpoint "$RUN/model" --benchmark "$RUN/benchmark" \
      --device "$DEVICE" --output "$RUN/eval" --title "GPU reference, held-out benchmark" | tee "$OUT/scores.md"
    cp "$RUN/eval/scores.json" "$OUT/scores.json"
    tar -C "$RUN" -cf - model | split -b 15M - "$OUT/model.tar.part-"
    ;;
  *)
    echo "gpu-reference: unknown step $STEP (bench or train)" >&2
    exit 2
    ;;
esac

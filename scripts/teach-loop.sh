#!/bin/bash
# The "Teach it your robot" loop measured on simulated bags of a look the shipped model fails on (the wrist
# camera): record -> generate -> shipped model on held-out bags -> fine-tune (MIN minutes) -> evaluate again.
# Steps already done are skipped on a rerun. About 40 min on 2 CPU cores; OUT, EPS, HEPS, MIN override.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MUJOCO_GL=egl
B=${OUT:-runs/loop}
S=".venv/bin/python -m spatial_mllm_ros"
EPS=${EPS:-24}; HEPS=${HEPS:-12}; MIN=${MIN:-15}
rec() { [ -d "$1" ] || $S sim record --out "$1" --episodes "$2" --seed "$3" --cameras front,wrist --appearance wrist_camera --frames 8 --motion random; }
rec $B/bags_train "$EPS" 500000
rec $B/bags_heldout "$HEPS" 510000
gen() { [ -f "$2/samples.jsonl" ] || $S data generate --source rosbag --root "$1" --image-topic /camera/wrist/image_raw --base-frame world --gripper-frame gripper --split marker --tasks robot --out "$2"; }
gen $B/bags_train $B/data_train
gen $B/bags_heldout $B/data_heldout
[ -f $B/own_look/in_distribution/benchmark.jsonl ] || $S data benchmark --source sim --suite shifts --sets in_distribution --sim-scenes 40 --per-task 1000 --sim-first-seed 400000 --out $B/own_look
# the in-distribution set of the shift suite (seeds 200000+), to see what the fine-tune costs
[ -f $B/suite/in_distribution/benchmark.jsonl ] || $S data benchmark --source sim --suite shifts --sets in_distribution --out $B/suite
[ -f $B/eval_before/report.json ] || $S evaluate --checkpoint spatial_mllm_ros/assets/spatialmllm-tiny --set wrist_bags=$B/data_heldout/samples.jsonl --set in_distribution=$B/suite/in_distribution --output $B/eval_before --device cpu
$S train --recipe finetune --data $B/data_train/samples.jsonl --data $B/own_look/in_distribution/benchmark.jsonl --eval $B/data_heldout/samples.jsonl --output $B/ft --minutes "$MIN"
$S evaluate --checkpoint $B/ft/final --set wrist_bags=$B/data_heldout/samples.jsonl --set in_distribution=$B/suite/in_distribution --output $B/eval_after --device cpu

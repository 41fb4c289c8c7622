#!/usr/bin/env bash
# Run the test suite in .venv with ROS traffic kept on this machine and off other runs' domains.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# One DDS domain per run (0-101 valid for Fast DDS on Linux): parallel runs never cross-talk.
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}
export MUJOCO_GL=${MUJOCO_GL:-egl}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Create or refresh .venv with every pinned dependency, the package itself (editable) and its typed interfaces
# (spatial_mllm_interfaces and third_party/tf2_msgs, built from source by scripts/build_interfaces.py; about
# a minute each the first time).
# Idempotent: a stamp of the inputs makes a re-run with nothing changed take about a second.
#
#   scripts/setup-env.sh            set up (or verify) .venv
#   scripts/setup-env.sh --relock   re-resolve and rewrite requirements/constraints.txt
#
# Environment overrides: PYTHON (interpreter, 3.10-3.12), VENV (default .venv),
# TORCH_VERSION (default 2.13.0), TORCH_INDEX_URL (e.g. a CUDA or CPU wheel index).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
RELOCK=0
[ "${1:-}" = "--relock" ] && RELOCK=1

log() { printf '[setup-env] %s\n' "$*" >&2; }

"$PYTHON" - <<'EOF' || { log "Python 3.10-3.12 required (set PYTHON=...)"; exit 1; }
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)
EOF

# A sourced system ROS 2 (setup.bash sets ROS_DISTRO) that already provides rclpy wins over the wheels.
SYSTEM_ROS=0
if [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c "import rclpy" >/dev/null 2>&1; then
  SYSTEM_ROS=1
fi
HAS_CUDA=0
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && HAS_CUDA=1

stamp_inputs() {
  cat requirements/*.txt setup.py setup.cfg package.xml scripts/setup-env.sh scripts/build_interfaces.py \
    scripts/wheel-includes.cmake
  find spatial_mllm_interfaces third_party -type f | LC_ALL=C sort | xargs cat
  echo "python=$("$PYTHON" -c 'import sys; print(sys.version)') system_ros=$SYSTEM_ROS cuda=$HAS_CUDA torch=$TORCH_VERSION"
}
STAMP=$(stamp_inputs | sha256sum | cut -d' ' -f1)
if [ $RELOCK = 0 ] && [ -f "$VENV/.setup-stamp" ] && [ "$(cat "$VENV/.setup-stamp")" = "$STAMP" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if [ $SYSTEM_ROS = 1 ]; then
    log "using the system ROS 2 ($ROS_DISTRO) rclpy: venv with --system-site-packages"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
CONSTRAINTS=(-c requirements/constraints.txt)
[ $RELOCK = 1 ] && CONSTRAINTS=()

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build on CPU machines.
TORCH_ARGS=("torch==$TORCH_VERSION")
[ -n "${TORCH_INDEX_URL:-}" ] && TORCH_ARGS+=(--index-url "$TORCH_INDEX_URL")
log "torch $TORCH_VERSION ($([ $HAS_CUDA = 1 ] && echo 'CUDA machine' || echo 'no CUDA'))"
"${PIP[@]}" install "${TORCH_ARGS[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

REQS=(-r requirements/base.txt)
[ $SYSTEM_ROS = 0 ] && REQS+=(-r requirements/ros.txt -r requirements/interfaces.txt)
log "dependencies"
"${PIP[@]}" install "${CONSTRAINTS[@]}" "${REQS[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
log "package (editable)"
"${PIP[@]}" install --no-deps --no-build-isolation -e . 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
if [ $SYSTEM_ROS = 0 ]; then
  "$VENV/bin/python" scripts/build_interfaces.py  # cached: a no-op while its sources are unchanged
else
  log "system ROS 2: build spatial_mllm_interfaces with colcon and source its install (docs/node.md#typed-interfaces)"
fi

if [ $RELOCK = 1 ]; then
  { echo "# Pinned versions of every dependency (pip constraints). torch is pinned in scripts/setup-env.sh."
    echo "# Regenerate: scripts/setup-env.sh --relock"
    "$VENV/bin/python" -m pip freeze --exclude-editable | grep -v -E '^(torch|spatial.mllm.ros|spatial.mllm.interfaces|tf2.msgs)( |==)'
  } > requirements/constraints.txt
  log "wrote requirements/constraints.txt"
  STAMP=$(stamp_inputs | sha256sum | cut -d' ' -f1)
fi
echo "$STAMP" > "$VENV/.setup-stamp"
log "ready: $VENV"

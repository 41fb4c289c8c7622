"""The end-to-end demo's ROS-free parts: moves, questions, truth, agreement, the table, the offline stage.

The offline stage records a bag, annotates it with a rubric and grades it against truth. The live stage
with the nodes on DDS is spatial_mllm_ros.ros.demo.
"""

from spatial_mllm_ros.demo.errors import DemoError, LiveStageError, ModelMissingError, NoDemoSceneError
from spatial_mllm_ros.demo.offline import OfflineResult, run_offline
from spatial_mllm_ros.demo.script import (
    DEMO_CAMERA,
    LiveRow,
    Move,
    Probe,
    agreement,
    demo_moves,
    find_demo_seed,
    format_table,
    question_json,
    resolve_checkpoint,
    truth_of,
)

__all__ = [
    "DEMO_CAMERA",
    "DemoError",
    "LiveRow",
    "LiveStageError",
    "ModelMissingError",
    "Move",
    "NoDemoSceneError",
    "OfflineResult",
    "Probe",
    "agreement",
    "demo_moves",
    "find_demo_seed",
    "format_table",
    "question_json",
    "resolve_checkpoint",
    "run_offline",
    "truth_of",
]

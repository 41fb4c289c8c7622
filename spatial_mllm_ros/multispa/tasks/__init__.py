"""The task registry: every sub-task name the engine, the benchmark and training use.

Benchmark sub-tasks (26, the paper's MultiSPA benchmark):
  depth (4): depth_value_dot, depth_value_coord, depth_compare_dot, depth_compare_coord
  correspondence (2): correspondence_coord, correspondence_choice
  camera (9): camera_translation_x, camera_translation_y, camera_translation_z, camera_yaw_direction,
      camera_pitch_direction, camera_distance, camera_yaw_angle, camera_pitch_angle, camera_vector
  object_movement (8): object_{distance,vector}_{coord,dot}_{adt,pstudio}
  object_size (3): object_size_height, object_size_length, object_size_width
Robot extensions (family "robot", simulation only): robot_{gripper,object}_{direction,yes_no,distance}
and point-track movement on simulated clips object_{distance,vector}_{coord,dot}_sim.
Meta's names for the same tasks (x_movement, depth_perception, ...) are accepted too (aliases.py).
"""

from __future__ import annotations

from spatial_mllm_ros.multispa.errors import UnknownTaskError
from spatial_mllm_ros.multispa.tasks import camera, correspondence, depth, movement, robot, size
from spatial_mllm_ros.multispa.tasks.aliases import META_ALIASES
from spatial_mllm_ros.multispa.tasks.base import TaskContext, TaskSpec

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (*depth.SPECS, *correspondence.SPECS, *camera.SPECS, *movement.SPECS, *size.SPECS,
                 *robot.SPECS, *movement.SIM_SPECS)
}
FAMILIES: dict[str, tuple[str, ...]] = {}
for _spec in TASKS.values():
    FAMILIES[_spec.family] = (*FAMILIES.get(_spec.family, ()), _spec.name)
BENCHMARK_FAMILIES: tuple[str, ...] = ("depth", "correspondence", "camera", "object_movement", "object_size")
BENCHMARK_TASKS: tuple[str, ...] = tuple(n for f in BENCHMARK_FAMILIES for n in FAMILIES[f])


def resolve_tasks(names: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Expand a comma list of task, family and Meta's names, "benchmark" and "all" into sub-task names."""
    groups = [names] if isinstance(names, str) else list(names)
    items = [x.strip() for group in groups for x in group.split(",") if x.strip()]
    out: list[str] = []
    for item in items or ["all"]:
        if item == "all":
            expanded: tuple[str, ...] = tuple(TASKS)
        elif item == "benchmark":
            expanded = BENCHMARK_TASKS
        elif item in FAMILIES:
            expanded = FAMILIES[item]
        elif item in TASKS:
            expanded = (item,)
        elif item in META_ALIASES:
            expanded = resolve_tasks(META_ALIASES[item])
        else:
            raise UnknownTaskError(item, ("all", "benchmark", *FAMILIES, *TASKS, *META_ALIASES))
        out += [n for n in expanded if n not in out]
    return tuple(out)


def tasks_for_source(source: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """Keep the sub-tasks among names that scenes of `source` can feed."""
    return tuple(n for n in names if source in TASKS[n].sources)


__all__ = ["BENCHMARK_TASKS", "FAMILIES", "META_ALIASES", "TASKS", "TaskContext", "TaskSpec", "resolve_tasks",
           "tasks_for_source"]

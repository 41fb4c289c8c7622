"""Held-out data by recording: every sample of a bag (or episode, or scene) on one side of the split.

Frames of one recording are near copies of each other; a split by sample would score the model on
frames it trained on, and a robot team wants to know how it does on the next bag. The data engine
names the recording in each sample's meta: the rosbag source its bag, episode and scene ("<bag>#<i>"),
the simulation its scene, the recipe's benchmarks their episode.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from spatial_mllm_ros.multispa.format import Sample
from spatial_mllm_ros.multispa.train.errors import HeldOutSplitError

RECORDING_KEYS = ("bag", "episode", "scene")  # meta fields that name a recording, the coarsest first


@dataclass
class Split:
    """Training and held-out samples, and the recordings held out."""

    train: list[Sample]
    held_out: list[Sample]
    held_out_recordings: list[str]


def recording_of(sample: Sample, coarsest: bool = True) -> str | None:
    """Name the recording of a sample's frames by its coarsest (else finest) meta field; None if none."""
    for key in RECORDING_KEYS if coarsest else RECORDING_KEYS[::-1]:
        value = sample.meta.get(key)
        if value not in (None, ""):
            return f"{key} {value}"
    return None


def _by_recording(samples: Sequence[Sample], coarsest: bool) -> dict[str, list[Sample]]:
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        name = recording_of(sample, coarsest)
        if name is None:
            raise HeldOutSplitError(
                f"sample {sample.id} names no {'/'.join(RECORDING_KEYS)} in its meta, so the data cannot be "
                "split by recording; give held-out data from other recordings (--eval)"
            )
        groups[name].append(sample)
    return groups


def split_by_recording(samples: Sequence[Sample], share: float, seed: int) -> Split:
    """Hold out about `share` of the recordings (at least one, never all), drawn with `seed`.

    Recordings are bags where there are several, else episodes or scenes (one bag of many episodes).
    """
    groups = _by_recording(samples, coarsest=True)
    if len(groups) < 2:
        groups = _by_recording(samples, coarsest=False)
    names = sorted(groups)
    if len(names) < 2:
        raise HeldOutSplitError(
            f"all {len(samples)} samples come from one recording ({names[0] if names else 'none'}): "
            "nothing to hold out; record more bags or episodes, or give held-out data (--eval)"
        )
    held = sorted(random.Random(seed).sample(names, min(len(names) - 1, max(1, round(share * len(names))))))
    train = [s for n in names if n not in held for s in groups[n]]
    return Split(train, [s for n in held for s in groups[n]], held)


def check_apart(train: Sequence[Sample], held_out: Sequence[Sample]) -> None:
    """Refuse held-out data that shares a recording with the training data (its score would flatter).

    Recordings are compared at their finest (one episode of a bag); samples that name none cannot be
    checked, so held-out data given by hand is taken on trust there.
    """
    finest = [{n for s in part if (n := recording_of(s, coarsest=False))} for part in (train, held_out)]
    shared = sorted(finest[0] & finest[1])
    if shared:
        raise HeldOutSplitError(
            f"{len(shared)} recordings are in both the training and the held-out data (e.g. {shared[0]}); "
            "hold out other bags or episodes"
        )

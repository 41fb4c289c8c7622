"""MultiSPA samples: one JSONL line each (images, a human/gpt exchange, sizes and our labels).

The prompt inside a sample is written in the conversation format of spatial_mllm_ros.conventions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from spatial_mllm_ros.conventions import QuestionKind, build_prompt, task_description


@dataclass
class Sample:
    """One JSONL line of MultiSPA-style data: images, a human/gpt exchange, sizes and our labels."""

    id: str
    image: list[str]
    conversations: list[dict[str, str]]
    height_list: list[int] = field(default_factory=list)
    width_list: list[int] = field(default_factory=list)
    task: str = ""
    kind: QuestionKind = QuestionKind.FREE
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The first human turn."""
        return next(t["value"] for t in self.conversations if t["from"] == "human")

    @property
    def answer(self) -> str:
        """The first gpt turn."""
        return next(t["value"] for t in self.conversations if t["from"] == "gpt")

    @property
    def question(self) -> str:
        """The question line of the prompt (its last: image lines and description come first), as asked."""
        lines = self.prompt.strip().splitlines()
        return lines[-1] if lines else ""


def make_sample(
    id: str,
    images: list[str],
    question: str,
    answer: str,
    *,
    kind: QuestionKind | str,
    task: str = "",
    sizes: list[tuple[int, int]] | None = None,
    description: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Sample:
    """Build a Sample with the prompt assembled by build_prompt; sizes are (width, height) per image."""
    kind = QuestionKind(kind)
    desc = task_description(kind) if description is None else description
    sizes = sizes or []
    return Sample(
        id=id,
        image=list(images),
        conversations=[
            {"from": "human", "value": build_prompt(len(images), desc, question)},
            {"from": "gpt", "value": answer},
        ],
        width_list=[int(w) for w, _ in sizes],
        height_list=[int(h) for _, h in sizes],
        task=task,
        kind=kind,
        meta=dict(meta or {}),
    )


def sample_to_json(sample: Sample) -> str:
    """One JSONL line (no trailing newline) in the MultiSPA field layout plus task/kind/meta."""
    return json.dumps(
        {
            "id": sample.id,
            "image": sample.image,
            "conversations": sample.conversations,
            "height_list": sample.height_list,
            "width_list": sample.width_list,
            "task": sample.task,
            "kind": QuestionKind(sample.kind).value,
            "meta": sample.meta,
        },
        ensure_ascii=False,
    )


def sample_from_json(line: str | dict[str, Any]) -> Sample:
    """Parse one JSONL line (or its dict); a missing kind/task/meta (upstream data) gets defaults."""
    d = json.loads(line) if isinstance(line, str) else line
    image = d.get("image", [])
    return Sample(
        id=str(d["id"]),
        image=[image] if isinstance(image, str) else list(image),
        conversations=list(d["conversations"]),
        height_list=list(d.get("height_list", [])),
        width_list=list(d.get("width_list", [])),
        task=str(d.get("task", "")),
        kind=QuestionKind(d.get("kind", QuestionKind.FREE.value)),
        meta=dict(d.get("meta", {})),
    )

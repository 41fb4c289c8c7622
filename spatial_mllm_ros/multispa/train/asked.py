"""A sample rewritten as the runtime asks it: the kind's task description, the question, the bare value.

The data engine words each exchange its own way: a paraphrased task description and an answer in a
sentence ("Mostly `down`."). The runtime (model.runtime) asks with conventions.task_description(kind)
and the question, forces the opening backtick, then scores the value's first token (closed sets) or its
digits (distances). A model trained on the sentences is taught another next token ("Mostly") than the one
the runtime reads; trained on this form, it learns the token it is scored on.
"""

from __future__ import annotations

from spatial_mllm_ros.answers import parse_answer
from spatial_mllm_ros.conventions import format_value
from spatial_mllm_ros.multispa.format import Sample, make_sample


def as_asked(sample: Sample) -> Sample | None:
    """Return the sample in the runtime's prompt and answer form; None when its answer has no value.

    The value is what evaluation grades as the truth (answers.parse_answer of the answer as written).
    """
    value = parse_answer(sample.answer, sample.kind).value
    if value is None:
        return None
    return make_sample(
        sample.id,
        sample.image,
        sample.question,
        format_value(sample.kind, value),
        kind=sample.kind,
        task=sample.task,
        sizes=list(zip(sample.width_list, sample.height_list)),
        meta=sample.meta,
    )

"""Write what the annotator found: label tables, an episodes table, plots, an HTML report, reward bags.

Every file is written to a temporary name beside its target and renamed into place, so a crash never
leaves a half-written output behind.
"""

from __future__ import annotations

import csv
import heapq
import html
import io
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spatial_mllm_ros.bags import Bag
from spatial_mllm_ros.files import atomic_write, atomic_write_text
from spatial_mllm_ros.interfaces import ANSWER_TYPE, AnswerTypes, answer_definition, answer_message
from spatial_mllm_ros.reward.errors import OutputError
from spatial_mllm_ros.reward.labels import EPISODE_COLUMNS, LABEL_COLUMNS, BagResult, EpisodeResult, Label

REWARD_TOPIC = "/reward"
ANSWERS_TOPIC = "/reward/answers"
TYPED_ANSWERS_TOPIC = "/reward/answers_typed"
PLOTS_DIR = "plots"
BAGS_DIR = "bags"


def label_rows(results: Sequence[EpisodeResult]) -> list[dict]:
    """Every label of every episode as flat rows (LABEL_COLUMNS)."""
    return [lab.row() for r in results for lab in r.labels]


def write_tables(out: Path, results: Sequence[EpisodeResult], failed: Sequence[BagResult] = ()) -> None:
    """labels.parquet, labels.jsonl and episodes.csv (one row per episode, one per failed bag)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = label_rows(results)
    schema = pa.schema([
        ("bag", pa.string()), ("bag_path", pa.string()), ("episode", pa.int64()), ("topic", pa.string()),
        ("check", pa.string()), ("check_type", pa.string()), ("span", pa.string()), ("step", pa.int64()),
        ("stamps_ns", pa.list_(pa.int64())), ("t_start_ns", pa.int64()), ("t_end_ns", pa.int64()),
        ("question", pa.string()), ("answer", pa.string()), ("value", pa.string()), ("unit", pa.string()),
        ("confidence", pa.float64()), ("reward", pa.float64()), ("expected", pa.string()),
        ("error", pa.string()), ("ood_score", pa.float64()),
    ])
    assert tuple(schema.names) == LABEL_COLUMNS
    table = pa.Table.from_pylist(rows, schema=schema)
    atomic_write(out / "labels.parquet", lambda tmp: pq.write_table(table, tmp))
    atomic_write_text(out / "labels.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EPISODE_COLUMNS)
    writer.writeheader()
    for r in results:
        writer.writerow(r.summary())
    for b in failed:
        writer.writerow({"bag": b.bag, "bag_path": b.bag_path, "episode": -1, "error": b.error})
    atomic_write_text(out / "episodes.csv", buf.getvalue())


def plot_path(out: Path, result: EpisodeResult) -> Path:
    """Where an episode's PNG goes."""
    return out / PLOTS_DIR / f"{result.key.replace('#', '_ep')}.png"


def plot_episode(out: Path, result: EpisodeResult) -> Path:
    """PNG: frame thumbnails over the per-step reward curve (and the progress curve when asked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thumbs = result.thumbnails
    fig = plt.figure(figsize=(max(6.0, 1.6 * max(1, len(thumbs))), 4.6))
    t0 = result.stamps_ns[0] if result.stamps_ns else result.start_ns
    # The thumbnails as one strip in one axes, fixed margins: a grid of axes laid out by tight_layout made
    # each plot cost more than the model's answers for its episode.
    strip = fig.add_axes((0.01, 0.66, 0.98, 0.28))
    strip.axis("off")
    if thumbs:
        height = max(img.shape[0] for _, img in thumbs)
        pad = [((0, height - img.shape[0]), (0, 6), (0, 0)) for _, img in thumbs]  # 6-px white gaps
        tiles = [np.pad(img, p, constant_values=255) for (_, img), p in zip(thumbs, pad)]
        strip.imshow(np.hstack(tiles)[:, :-6])
        for i, (stamp, img) in enumerate(thumbs):
            x = sum(t.shape[1] for t in tiles[:i]) + img.shape[1] / 2
            strip.text(x, -4, f"{(stamp - t0) / 1e9:.2f} s", fontsize=8, ha="center", va="bottom")
    ax = fig.add_axes((0.08, 0.1, 0.9, 0.45))
    if result.step_rewards:
        steps = sorted(result.step_rewards)
        xs = [(result.stamps_ns[s + 1] - t0) / 1e9 for s in steps]
        ax.plot(xs, [result.step_rewards[s] for s in steps], "o-", label="step reward")
    if result.progress:
        ts = [lab.t_end_ns for lab in result.labels if lab.check_type == "progress"]
        xs = [0.0] + sorted((t - t0) / 1e9 for t in ts)
        ax.plot(xs[: len(result.progress)], result.progress, "s--", label="progress (GVL)")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("time in episode (s)")
    ax.set_ylabel("reward")
    voc = "" if result.voc is None else f", VOC {result.voc:.2f}"
    ax.set_title(f"{result.bag} episode {result.episode}: reward {result.reward:.2f}{voc}", fontsize=9)
    if result.step_rewards or result.progress:
        ax.legend(fontsize=8, loc="best")
    path = plot_path(out, result)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)
    return path


def write_report(
    out: Path, results: Sequence[EpisodeResult], failed: Sequence[BagResult], title: str,
) -> None:
    """report.html: one row per episode with its plot, then the bags that failed and why."""
    esc = html.escape
    rows = []
    for r in results:
        png = plot_path(out, r)
        img = f'<img src="{esc(str(png.relative_to(out)))}" width="480">' if png.exists() else ""
        voc = "" if r.voc is None else f"{r.voc:.3f}"
        ood = "" if r.ood_score is None else f"{r.ood_score:.2f}"
        flag = " style='background:#fdd'" if r.out_of_distribution else ""
        rows.append(
            f"<tr{flag}><td>{esc(r.bag)}</td><td>{r.episode}</td><td>{esc(r.name)}</td><td>{r.n_frames}</td>"
            f"<td>{len(r.labels)}</td><td>{r.reward:.3f}</td><td>{voc}</td><td>{esc(str(r.success))}</td>"
            f"<td>{ood}</td><td>{esc(r.error)}</td><td>{img}</td></tr>"
        )
    errors = "".join(f"<li><b>{esc(b.bag)}</b>: {esc(b.error)}</li>" for b in failed)
    mean = np.mean([r.reward for r in results]) if results else float("nan")
    unfamiliar = sum(bool(r.out_of_distribution) for r in results)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f"<p>{len(results)} episodes, mean reward {mean:.3f}; {len(failed)} bags failed.</p>"
        + (f"<p><b>{unfamiliar} episode(s) look out of distribution</b> (OOD score above 1, shaded): the "
           "model has not seen frames like these and its rewards there may be wrong however confident.</p>"
           if unfamiliar else "")
        + "<table><tr><th>bag</th><th>episode</th><th>name</th><th>frames</th><th>labels</th><th>reward</th>"
        "<th>VOC</th><th>success</th><th>OOD score</th><th>error</th><th>plot</th></tr>"
        + "".join(rows) + "</table>"
        + (f"<h2>Failed bags</h2><ul>{errors}</ul>" if failed else "")
        + "</body></html>"
    )
    atomic_write_text(out / "report.html", page)


def _label_answer(result: EpisodeResult, label: Label) -> dict[str, Any]:
    """Write a label as the node's answer dict (what its SpatialAnswer carries)."""
    return {"id": f"{result.key}/{label.check}/{label.step}", "question": label.question,
            "answer": label.answer, "value": json.loads(label.value), "unit": label.unit,
            "confidence": label.confidence, "ood_score": label.ood_score, "camera": label.topic,
            "stamp": label.t_end_ns * 1e-9, "error": label.error}


def _reward_messages(results: Sequence[EpisodeResult], typestore: Any) -> list[tuple[int, str, bytes]]:
    """(time, topic, CDR) of /reward, /reward/answers and /reward/answers_typed, sorted by time.

    /reward (Float64) carries each step's reward at the step's second frame; an episode without step
    rewards gets its episode reward at its last frame. /reward/answers (String) carries, at each frame
    time, the JSON of every label whose last frame is that frame, plus the episode reward at the end;
    /reward/answers_typed one SpatialAnswer per label at its last frame.
    """
    float64 = typestore.types["std_msgs/msg/Float64"]
    string = typestore.types["std_msgs/msg/String"]
    types = AnswerTypes(answer=typestore.types[ANSWER_TYPE], header=typestore.types["std_msgs/msg/Header"],
                        time=typestore.types["builtin_interfaces/msg/Time"])

    def reward(t: int, value: float) -> tuple[int, str, bytes]:
        return t, REWARD_TOPIC, typestore.serialize_cdr(float64(data=float(value)), "std_msgs/msg/Float64")

    msgs = []
    for r in results:
        if not r.stamps_ns:
            continue
        msgs.extend(reward(r.stamps_ns[s + 1], v) for s, v in r.step_rewards.items())
        if not r.step_rewards:
            msgs.append(reward(r.stamps_ns[-1], r.reward))
        by_time: dict[int, list] = {}
        for lab in r.labels:
            by_time.setdefault(lab.t_end_ns, []).append(lab.row())
            typed = answer_message(_label_answer(r, lab), lab.stamps_ns, types)
            msgs.append((lab.t_end_ns, TYPED_ANSWERS_TOPIC, typestore.serialize_cdr(typed, ANSWER_TYPE)))
        for t, rows in sorted(by_time.items()):
            doc = {"bag": r.bag, "episode": r.episode, "labels": rows}
            if t == r.stamps_ns[-1]:
                doc["episode_reward"] = r.reward
            text = json.dumps(doc, ensure_ascii=False)
            msgs.append((t, ANSWERS_TOPIC, typestore.serialize_cdr(string(data=text), "std_msgs/msg/String")))
    return sorted(msgs, key=lambda m: (m[0], m[1]))


def write_reward_bag(
    out: Path, bag_path: str | Path, results: Sequence[EpisodeResult], typestore: str = "jazzy",
) -> Path:
    """Copy a bag adding the /reward topics (same storage), for Foxglove or rviz.

    The bag carries the SpatialAnswer definition, so a reader needs only the bag to decode it.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_types_from_msg, get_typestore

    from spatial_mllm_ros.bags import TYPESTORES

    src = Path(bag_path)
    target = out / BAGS_DIR / f"{src.stem if src.is_file() else src.name}_reward"
    if target.exists():
        return target
    ros = get_typestore(TYPESTORES[typestore])
    staging = out / BAGS_DIR / f".{target.name}.tmp"  # the bag inside keeps its final file names
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tmp = staging / target.name
    try:
        ros.register(get_types_from_msg(answer_definition(), ANSWER_TYPE))
        with Bag(src, typestore) as bag:
            info = bag.info()
            plugin = StoragePlugin.MCAP if info.storage == "mcap" else StoragePlugin.SQLITE3
            with Writer(tmp, version=9, storage_plugin=plugin) as writer:
                conns = {}
                for c in bag.reader.connections:
                    if (c.topic, c.msgtype) in conns:
                        continue
                    try:
                        conns[(c.topic, c.msgtype)] = writer.add_connection(
                            c.topic, c.msgtype, typestore=bag.reader.typestore
                        )
                    except Exception:  # a type the bag never defined: the copy leaves that topic out
                        continue
                extra = {
                    REWARD_TOPIC: writer.add_connection(REWARD_TOPIC, "std_msgs/msg/Float64", typestore=ros),
                    ANSWERS_TOPIC: writer.add_connection(ANSWERS_TOPIC, "std_msgs/msg/String", typestore=ros),
                    TYPED_ANSWERS_TOPIC: writer.add_connection(
                        TYPED_ANSWERS_TOPIC, ANSWER_TYPE, typestore=ros),
                }
                copied = (
                    (t, c.topic, raw, conns[(c.topic, c.msgtype)])
                    for c, t, raw in bag.reader.messages()
                    if (c.topic, c.msgtype) in conns
                )
                added = ((t, topic, raw, extra[topic]) for t, topic, raw in _reward_messages(results, ros))
                for t, _, raw, conn in heapq.merge(copied, added, key=lambda m: m[0]):
                    writer.write(conn, t, raw)
        os.replace(tmp, target)
    except Exception as exc:
        raise OutputError(f"bag {src}: cannot write the reward copy: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target

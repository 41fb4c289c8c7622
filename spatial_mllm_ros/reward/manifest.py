"""Resume after a crash: finished episodes are recorded one JSON line each, after their labels are on disk.

Order of writes per episode: parts/<key>.json (tmp + rename), then one manifest line (flush + fsync).
A kill between the two rewrites the same part on the next run (no duplicate); a torn last line is
ignored (the episode is redone). The first line holds the run's fingerprint: another rubric, model,
split or sampling never mixes into an existing output directory.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from spatial_mllm_ros.reward.errors import ManifestError
from spatial_mllm_ros.reward.labels import EpisodeResult
from spatial_mllm_ros.reward.outputs import atomic_write_text

MANIFEST_NAME = "manifest.jsonl"
PARTS_DIR = "parts"


def _part_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key) + ".json"


class Manifest:
    """The finished-episode record of one output directory (single writer: the driver process)."""

    def __init__(self, out_dir: str | Path, fingerprint: dict[str, Any]) -> None:
        self.out = Path(out_dir)
        self.path = self.out / MANIFEST_NAME
        self.parts = self.out / PARTS_DIR
        self.parts.mkdir(parents=True, exist_ok=True)
        self.entries: dict[str, tuple[str, str]] = {}  # episode key -> (part file, bag path)
        if self.path.exists():
            self._load(fingerprint)
        else:
            atomic_write_text(self.path, json.dumps({"fingerprint": fingerprint}, sort_keys=True) + "\n")

    def _load(self, fingerprint: dict[str, Any]) -> None:
        text = self.path.read_text()
        if text and not text.endswith("\n"):  # end a torn line so the next record starts clean
            with open(self.path, "a") as fh:
                fh.write("\n")
        head, self.entries = _read(self.out)
        if head != fingerprint:
            changed = sorted(k for k in set(head) | set(fingerprint) if head.get(k) != fingerprint.get(k))
            raise ManifestError(
                f"{self.out} holds labels made with other settings ({', '.join(changed)}); "
                "use a new --out directory or delete this one"
            )

    @property
    def done(self) -> frozenset[str]:
        """Keys of the episodes whose labels are safely on disk."""
        return frozenset(self.entries)

    def record(self, result: EpisodeResult) -> None:
        """Persist an episode's labels, then mark it finished."""
        part = _part_name(result.key)
        atomic_write_text(self.parts / part, json.dumps(result.to_json()))
        if result.key in self.entries:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"key": result.key, "part": part, "bag_path": result.bag_path}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.entries[result.key] = (part, result.bag_path)

    def results(self, bag_path: str | None = None) -> list[EpisodeResult]:
        """Finished episodes (of one bag, if given), ordered by bag path and episode index."""
        return _results(self.parts, self.entries, bag_path)


def _read(out: Path) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """Fingerprint and {episode key: part file} of an output directory's manifest."""
    path = out / MANIFEST_NAME
    lines = path.read_text().splitlines()
    try:
        head = json.loads(lines[0])["fingerprint"]
    except (IndexError, ValueError, KeyError, TypeError):
        raise ManifestError(f"{path}: not a manifest written by spatial-mllm annotate") from None
    entries = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except ValueError:  # a line torn by a kill: that episode is simply redone
            continue
        if (out / PARTS_DIR / entry["part"]).exists():
            entries[entry["key"]] = (entry["part"], entry.get("bag_path", ""))
    return head, entries


def _results(
    parts: Path, entries: dict[str, tuple[str, str]], bag_path: str | None = None,
) -> list[EpisodeResult]:
    out = [
        EpisodeResult.from_json(json.loads((parts / part).read_text()))
        for part, path in entries.values()
        if bag_path is None or path == bag_path
    ]
    return sorted(out, key=lambda r: (r.bag_path, r.episode))


def read_results(out: str | Path) -> list[EpisodeResult]:
    """Read the finished episodes recorded in an output directory."""
    out = Path(out)
    return _results(out / PARTS_DIR, _read(out)[1])

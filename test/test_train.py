"""Training loop on a real tiny InternVL: loss goes down, resume is exact, bad input is skipped, DDP runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatial_mllm_ros.conventions import format_value
from spatial_mllm_ros.model.factory import make_tiny_model
from spatial_mllm_ros.multispa.format import make_sample, sample_to_json
from spatial_mllm_ros.multispa.train.config import TrainConfig
from spatial_mllm_ros.multispa.train.errors import FamilyMismatchError, TrainConfigError
from spatial_mllm_ros.multispa.train.loop import train


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("train")
    make_tiny_model(d / "ckpt", image_size=56)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(24):
        bright = bool(rng.integers(0, 2))
        names = []
        for k in range(2):
            name = f"img{i}_{k}.png"
            Image.fromarray(np.full((40, 52, 3), 40 + 160 * bright + 10 * k, np.uint8)).save(d / name)
            names.append(name)
        sample = make_sample(
            f"s{i}",
            names,
            "Is the second image bright?",
            format_value("yes_no", bright),
            kind="yes_no",
            task="brightness",
            sizes=[(52, 40)] * 2,
        )
        lines.append(sample_to_json(sample))
    bad = [
        "{this is not json",
        json.dumps(
            {
                "id": "m",
                "image": ["missing.png"],
                "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "`no`"}],
            }
        ),
        json.dumps(
            {
                "id": "c",
                "image": [names[0]],  # two <image> marks, one image
                "conversations": [
                    {"from": "human", "value": "<image><image>\nq"},
                    {"from": "gpt", "value": "`no`"},
                ],
            }
        ),
    ]
    (d / "data.jsonl").write_text("\n".join(lines[:12] + bad + lines[12:]) + "\n")
    return d


def _config(d: Path, out: str, **kw: object) -> TrainConfig:
    base = dict(
        model=str(d / "ckpt"),
        data=[{"path": str(d / "data.jsonl")}],
        output_dir=str(d / out),
        tuning="full",
        train_projector=True,
        lr=2e-3,
        warmup_ratio=0.0,
        batch_size=4,
        max_tiles=1,
        progress=False,
        gradient_checkpointing=False,
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_loss_goes_down_and_bad_lines_are_counted(workdir: Path) -> None:
    result = train(_config(workdir, "run", max_steps=8, scheduler="constant"))
    assert result.steps == 8
    assert np.mean(result.losses[-3:]) < 0.85 * np.mean(result.losses[:2])
    assert result.skipped["malformed line"] == 1 and result.skipped["missing image"] == 1
    assert result.skipped["image count mismatch"] >= 1  # counted each time the bad sample is drawn
    out = workdir / "run"
    assert (out / "loss.png").stat().st_size > 1000
    assert len((out / "loss.csv").read_text().splitlines()) == 9
    assert (out / "final" / "model.safetensors").is_file()


def test_resume_reproduces_the_uninterrupted_run(workdir: Path) -> None:
    full = train(_config(workdir, "full", max_steps=4, save_every=2))
    part = train(_config(workdir, "part", max_steps=4, save_every=2))
    # interrupt: drop the final checkpoint and resume from step 3
    import shutil

    shutil.rmtree(workdir / "part" / "checkpoint-4")
    resumed = train(_config(workdir, "part", max_steps=4, save_every=2, resume="auto"))
    assert part.losses == full.losses
    assert resumed.steps == 4 and len(resumed.losses) == 2
    np.testing.assert_allclose(resumed.losses, full.losses[2:], rtol=1e-5)
    rows = (workdir / "part" / "loss.csv").read_text().splitlines()
    assert len(rows) == 5


def test_lora_default_trains_only_adapters(workdir: Path) -> None:
    result = train(_config(workdir, "lora", tuning="lora", train_projector=False, max_steps=2))
    assert (Path(result.output) / "adapter_model.safetensors").is_file()


def test_a_frozen_llm_leaves_only_the_named_parts_training(workdir: Path) -> None:
    from spatial_mllm_ros.multispa.train.modeling import _part, load_for_training

    tm = load_for_training(_config(workdir, "frozen", tuning="frozen", train_projector=True))
    assert {_part(n) for n, p in tm.model.named_parameters() if p.requires_grad} == {"projector"}
    with pytest.raises(TrainConfigError, match="neither the projector nor the vision encoder"):
        _config(workdir, "frozen", tuning="frozen", train_projector=False)


def test_family_mismatch_and_bad_config_are_clear_errors(workdir: Path) -> None:
    with pytest.raises(FamilyMismatchError, match="qwen2_5_vl"):
        train(_config(workdir, "bad", family="qwen2_5_vl", max_steps=1))
    with pytest.raises(TrainConfigError, match="tuning"):
        _config(workdir, "bad", tuning="everything")
    with pytest.raises(TrainConfigError, match="unknown key"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_command_line_flags_override_the_config_file(workdir: Path, tmp_path: Path) -> None:
    """`train --config F --output --resume --max-steps --device`: each flag replaces the file's value."""
    import yaml

    from spatial_mllm_ros.cli import build_parser
    from spatial_mllm_ros.cli.train import config_from_args

    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(yaml.safe_dump(_config(workdir, "from-file", max_steps=3).to_dict()))
    parser = build_parser()
    as_written = config_from_args(parser.parse_args(["train", "--config", str(cfg_file)]))
    expected = (str(workdir / "from-file"), 3, "auto")
    assert (as_written.output_dir, as_written.max_steps, as_written.device) == expected
    flags = ["--output", "o", "--resume", "auto", "--max-steps", "7", "--device", "cuda:1"]
    config = config_from_args(parser.parse_args(["train", "--config", str(cfg_file), *flags]))
    assert (config.output_dir, config.resume, config.max_steps, config.device) == ("o", "auto", 7, "cuda:1")


def test_torchrun_two_processes_on_cpu(workdir: Path, tmp_path: Path) -> None:
    cfg = _config(workdir, str(tmp_path / "ddp"), max_steps=3, batch_size=2)
    cfg_file = tmp_path / "train.yaml"
    import yaml

    cfg_file.write_text(yaml.safe_dump(cfg.to_dict()))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "spatial_mllm_ros",
            "train",
            "--config",
            str(cfg_file),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (tmp_path / "ddp" / "loss.csv").read_text().splitlines()
    assert len(rows) == 4
    assert (tmp_path / "ddp" / "final" / "model.safetensors").is_file()


def test_too_long_and_unreadable_samples_are_skipped_not_raised(workdir: Path) -> None:
    from spatial_mllm_ros.multispa.train.data import SkipCounter, SupervisedDataset, mix_sources
    from spatial_mllm_ros.multispa.train.modeling import load_for_training

    cfg = _config(workdir, "unused", max_tiles=1)
    tm = load_for_training(cfg)
    from spatial_mllm_ros.multispa.train.data import ChatSampleEncoder

    skipped = SkipCounter()
    records = mix_sources(cfg.data, skipped)
    (workdir / "broken.png").write_bytes(b"not a png")
    records[0].image_paths[0] = workdir / "broken.png"
    ds = SupervisedDataset(
        records, ChatSampleEncoder(tm.image_spec, tm.prompts), max_length=10, skipped=skipped
    )
    assert all(ds[i] is None for i in range(3))
    assert skipped["unreadable image"] == 1 and skipped["too long"] == 2
    assert "too long: 2" in skipped.summary()

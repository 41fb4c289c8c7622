"""`spatial-mllm ood`: fit a checkpoint's out-of-distribution statistics; measure how well they separate."""

from __future__ import annotations

import argparse
from pathlib import Path


def _load(args: argparse.Namespace) -> object:
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.runtime import SpatialModel

    # the checkpoint's own tower: a shift expert is neither needed nor loadable before the statistics exist
    return SpatialModel.load(ModelConfig(checkpoint=args.checkpoint, device=args.device, shift_expert="none"))


def _fit(args: argparse.Namespace) -> int:
    import numpy as np

    from spatial_mllm_ros.model.ood import fit_feature_stats
    from spatial_mllm_ros.multispa.train.data import frame_descriptors

    model = _load(args)
    descriptors = frame_descriptors(model, args.sources, args.max_frames, progress=True)
    stats = fit_feature_stats(descriptors, components=args.components, quantile=args.quantile)
    out = Path(args.out) if args.out else model.loaded.checkpoint
    path = stats.save(out)
    fitted = stats.score(descriptors)
    print(f"fitted on {len(descriptors)} frames ({descriptors.shape[1]} features, "
          f"{len(stats.variances)} axes)")
    print(f"score of the fitted frames: median {np.median(fitted):.2f}, 99th percentile "
          f"{np.quantile(fitted, 0.99):.2f} (1.0 = the {stats.quantile:.0%} of held-out familiar frames)")
    print(f"wrote {path}")
    return 0


def _auroc(args: argparse.Namespace) -> int:
    import numpy as np

    from spatial_mllm_ros.model.ood import auroc
    from spatial_mllm_ros.multispa.train.data import frame_descriptors

    model = _load(args)
    if model.ood_stats is None:
        raise SystemExit(f"{model.loaded.checkpoint} has no OOD statistics: run `spatial-mllm ood fit` first")
    familiar, unfamiliar = (model.ood_stats.score(frame_descriptors(model, s, args.max_frames, progress=True))
                            for s in (args.familiar, args.unfamiliar))
    print(f"familiar:   {len(familiar)} frames, median score {np.median(familiar):.2f}, "
          f"{(familiar > 1).mean():.1%} above 1")
    print(f"unfamiliar: {len(unfamiliar)} frames, median score {np.median(unfamiliar):.2f}, "
          f"{(unfamiliar > 1).mean():.1%} above 1")
    print(f"AUROC {auroc(familiar, unfamiliar):.3f} (0.5: no separation, 1.0: every unfamiliar frame scores "
          "higher)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `ood fit` and `ood auroc` to the CLI."""
    p = sub.add_parser("ood", help="fit and check the out-of-distribution score of a checkpoint")
    inner = p.add_subparsers(dest="ood_command", metavar="STEP", required=True)
    for name, helptext, func in (
        ("fit", "fit OOD statistics on familiar frames and save them with the checkpoint", _fit),
        ("auroc", "how well the saved statistics tell unfamiliar frames from familiar ones", _auroc),
    ):
        q = inner.add_parser(name, help=helptext)
        q.add_argument("--checkpoint", default="", help="checkpoint directory (default: the shipped model)")
        q.add_argument("--device", default="cpu")
        q.add_argument("--max-frames", type=int, default=2000,
                       help="evenly spaced subset per source (0: all)")
        q.set_defaults(func=func)
        if name == "fit":
            q.add_argument("sources", nargs="+",
                           help="familiar frames: image files, folders or benchmark JSONL")
            q.add_argument("--out", default="",
                           help="where to write ood_stats.safetensors (default: the checkpoint)")
            q.add_argument("--components", type=int, default=32,
                           help="main axes kept of the features' spread")
            q.add_argument("--quantile", type=float, default=0.99,
                           help="share of familiar frames scoring <= 1")
        else:
            q.add_argument("--familiar", nargs="+", required=True, help="frames like the training data")
            q.add_argument("--unfamiliar", nargs="+", required=True, help="frames of another look")

"""Stage 2's training-only probes: linear readouts inside the LLM with dense targets.

They give a from-scratch LLM the entity positions and motions the questions are about; they are dropped
after training, so the shipped model is the plain InternVL class.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from spatial_mllm_ros.conventions import DIRECTION_VECTORS
from spatial_mllm_ros.multispa.train.tiny.bank import Item
from spatial_mllm_ros.multispa.train.tiny.config import TinyRecipe
from spatial_mllm_ros.multispa.train.tiny.episodes import EpisodeData


class AuxProbes(torch.nn.Module):
    """Training-only linear probes inside the LLM (dropped after training): dense targets for stage 2.

    tokens: on every image token, each entity slot's camera-frame position and its change since the
            first frame (zero on the first frame's tokens): what a comparison needs, where it is read;
    answer: at the position that predicts the answer, the asked entity's motion vector (and, for "did X
            move <direction>?", its component along that direction), or for depth questions the depth
            difference of the two named things.
    """

    POSITION_SCALE, DELTA_SCALE, DEPTH_SCALE = 5.0, 20.0, 10.0

    def __init__(self, hidden: int, n_slots: int) -> None:
        super().__init__()
        self.tokens = torch.nn.Linear(hidden, 2 * n_slots * 3)
        self.answer = torch.nn.Linear(hidden, 5)

    def token_targets(
        self, episodes: list[EpisodeData], items: list[Item], tokens_per_image: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets and masks of every image token in batch order."""
        targets, masks = [], []
        for it in items:
            e = episodes[it.episode]
            first = it.frames[0]
            for j, f in enumerate(it.frames):
                pos = e.globals_[f, :, :3].reshape(-1) * self.POSITION_SCALE
                pos_mask = e.present[f].repeat_interleave(3)
                if j == 0:  # zero: a reader may average over all image tokens and still get the change
                    delta, delta_mask = torch.zeros_like(pos), pos_mask
                else:
                    delta = (e.globals_[f, :, :3] - e.globals_[first, :, :3]).reshape(-1) * self.DELTA_SCALE
                    delta_mask = (e.present[f] * e.present[first]).repeat_interleave(3)
                targets.append(torch.cat([pos, delta]).expand(tokens_per_image, -1))
                masks.append(torch.cat([pos_mask, delta_mask]).expand(tokens_per_image, -1))
        return torch.cat(targets), torch.cat(masks)

    def answer_targets(self, items: list[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets and masks at each question's answer-predicting position."""
        width = self.answer.out_features
        targets, masks = torch.zeros(len(items), width), torch.zeros(len(items), width)
        for r, it in enumerate(items):
            meta = it.question.meta
            if "vector_cam_m" in meta:
                targets[r, :3] = torch.tensor(meta["vector_cam_m"]) * self.DELTA_SCALE
                masks[r, :3] = 1.0
                if "asked" in meta:  # "did X move <asked>?": the motion's component along that direction
                    along = np.dot(meta["vector_cam_m"], DIRECTION_VECTORS[meta["asked"]])
                    targets[r, 4] = float(along) * self.DELTA_SCALE
                    masks[r, 4] = 1.0
            elif "depth_a_m" in meta:
                targets[r, 3] = (meta["depth_a_m"] - meta["depth_b_m"]) * self.DEPTH_SCALE
                masks[r, 3] = 1.0
        return targets, masks

    def loss(
        self,
        hidden_states: tuple[torch.Tensor, ...],
        image_mask: torch.Tensor,
        answer_at: torch.Tensor,
        episodes: list[EpisodeData],
        items: list[Item],
        recipe: TinyRecipe,
    ) -> torch.Tensor:
        """Masked smooth-L1 of both probes."""
        tokens_per_image = int(image_mask.sum()) // sum(len(i.frames) for i in items)
        t_tok, m_tok = self.token_targets(episodes, items, tokens_per_image)
        p_tok = self.tokens(hidden_states[recipe.aux_token_layer][image_mask])
        t_ans, m_ans = self.answer_targets(items)
        p_ans = self.answer(hidden_states[recipe.aux_answer_layer][torch.arange(len(items)), answer_at])
        total = torch.zeros((), device=p_tok.device)
        for pred, target, mask in ((p_tok, t_tok, m_tok), (p_ans, t_ans, m_ans)):
            target, mask = target.to(pred.device), mask.to(pred.device)
            err = F.smooth_l1_loss(pred, target, reduction="none", beta=0.1) * mask
            total = total + err.sum() / mask.sum().clamp(min=1)
        return total

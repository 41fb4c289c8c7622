"""Questions over the same frames as one token tree, so that the tokens they start with are run once.

Questions of a batch often begin alike: the same task description, the same wording up to an object's
name. Merged into a trie, every distinct token prefix is one node. One forward over the nodes, each
attending to the frames' shared prefix (already in the KV cache) and to its own ancestors only, gives
every question the last-token logits a left-padded batch gives, at the cost of the distinct tokens
instead of questions x the longest question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class QuestionTree:
    """A trie of token rows: node i holds tokens[i] at depth depths[i] below node parents[i]."""

    tokens: list[int]
    parents: list[int]  # -1: a row's first token (it follows the shared prefix)
    depths: list[int]
    ends: list[int]  # each row's last node, in row order

    @classmethod
    def build(cls, rows: Sequence[Sequence[int]]) -> QuestionTree:
        """Merge rows token by token; a parent always comes before its children."""
        tokens: list[int] = []
        parents: list[int] = []
        depths: list[int] = []
        ends: list[int] = []
        index: dict[tuple[int, int], int] = {}
        for row in rows:
            if not row:
                raise ValueError("a question row has no tokens")
            node = -1
            for tok in row:
                child = index.get((node, tok))
                if child is None:
                    child = index[(node, tok)] = len(tokens)
                    tokens.append(int(tok))
                    parents.append(node)
                    depths.append(depths[node] + 1 if node >= 0 else 0)
                node = child
            ends.append(node)
        return cls(tokens, parents, depths, ends)

    def path(self, node: int) -> list[int]:
        """List the nodes from a row's first token down to `node`."""
        out = []
        while node >= 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]

    def positions(self, prefix_len: int) -> torch.Tensor:
        """(1, nodes) position ids: a node sits where its token sits in its own row."""
        return torch.tensor([[prefix_len + d for d in self.depths]], dtype=torch.long)

    def attention_mask(self, prefix_len: int, dtype: torch.dtype) -> torch.Tensor:
        """Additive (1, 1, nodes, prefix + nodes) mask: a node sees the prefix, its ancestors and itself."""
        n = len(self.tokens)
        seen = np.zeros((n, n), dtype=bool)
        for i, parent in enumerate(self.parents):
            if parent >= 0:
                seen[i] = seen[parent]
            seen[i, i] = True
        allowed = torch.ones((n, prefix_len + n), dtype=torch.bool)
        allowed[:, prefix_len:] = torch.from_numpy(seen)
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[None, None]

    def row_layout(self, rows: Sequence[int], prefix_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row as a left-padded batch row: (cache positions to gather, 2-D attention mask).

        A row is the prefix, then padding, then its own path through the tree, so that rows which go on
        generating continue from one ordinary batched KV cache.
        """
        paths = [self.path(self.ends[r]) for r in rows]
        width = prefix_len + max(len(p) for p in paths)
        index = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        index[:, :prefix_len] = torch.arange(prefix_len)
        mask[:, :prefix_len] = 1
        for j, path in enumerate(paths):
            index[j, width - len(path) :] = torch.tensor(path) + prefix_len
            mask[j, width - len(path) :] = 1
        return index, mask

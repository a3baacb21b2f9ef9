"""Sequence encoders: a left-aligned (B, T, D) history -> the output at its last item.

Both are causal, so the output at slot ``length-1`` depends only on the real
items (see ``learner.features`` for the layout). A history with no items gets a
learned "empty history" output instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def last_valid(outputs: Tensor, lengths: Tensor, empty: Tensor) -> Tensor:
    """outputs (B, T, H) at slot ``lengths-1`` per row; rows with length 0 get ``empty`` (H,)."""
    index = (lengths - 1).clamp(min=0).long()  # (B,)
    picked = outputs[torch.arange(outputs.shape[0], device=outputs.device), index]  # (B, H)
    return torch.where((lengths > 0).unsqueeze(1), picked, empty.to(picked.dtype))


class GRUEncoder(nn.Module):
    """A GRU over the history, as in the paper's RNN recommender."""

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.output_dim = hidden_dim
        self.gru = nn.GRU(
            input_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.empty = nn.Parameter(torch.zeros(hidden_dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, D), mask (B, T) -> (B, H)."""
        outputs, _ = self.gru(x)  # (B, T, H); padding after the last item is never read
        return last_valid(outputs, mask.sum(dim=1), self.empty)


class CausalTransformerEncoder(nn.Module):
    """SASRec-style: learned positions + pre-norm transformer layers with a causal mask."""

    causal: Tensor  # (max_len, max_len) bool, True above the diagonal (future slots)

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        num_layers: int,
        num_heads: int,
        dropout: float,
        max_len: int,
    ) -> None:
        super().__init__()
        if input_dim % num_heads:
            raise ValueError(f"embedding_dim {input_dim} is not divisible by num_heads {num_heads}")
        self.output_dim = input_dim
        self.position = nn.Embedding(max_len, input_dim)
        nn.init.normal_(self.position.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            input_dim,
            num_heads,
            dim_feedforward=hidden_dim,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(input_dim)
        self.empty = nn.Parameter(torch.zeros(input_dim))
        causal = torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal", causal, persistent=False)  # (T, T) True = masked

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, D), mask (B, T) -> (B, D)."""
        steps = x.shape[1]
        x = x + self.position.weight[:steps]  # (B, T, D)
        # Causality alone keeps padding out: every real query sits before all padding.
        h = self.layers(x, mask=self.causal[:steps, :steps], is_causal=True)  # (B, T, D)
        return last_valid(self.norm(h), mask.sum(dim=1), self.empty)

"""Attention building blocks shared by the Transformer, the fusion nets and anything else that
attends: multi-head attention on ``F.scaled_dot_product_attention`` (fused flash/memory-efficient
kernels where the device has them), sinusoidal positions, and pre-LN encoder and decoder layers
(the decoder with a key/value cache for incremental decoding)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(key_padding_mask: torch.Tensor | None, q_len: int, k_len: int, causal: bool,
                   device: torch.device) -> torch.Tensor | None:
    """Boolean mask for SDPA (True = may attend), broadcastable to ``(B, heads, q_len, k_len)``.

    ``key_padding_mask`` is ``(B, k_len)`` with True at padding, PyTorch's ``nn.MultiheadAttention``
    convention. SDPA cannot combine ``is_causal`` with a mask, so both are folded in here.
    """
    mask = None
    if key_padding_mask is not None:
        mask = ~key_padding_mask[:, None, None, :]
    if causal:
        # a query at position i (counted from the end of the keys, so cached keys stay visible)
        # sees keys 0..i + (k_len - q_len)
        tri = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
        mask = tri if mask is None else mask & tri
    return mask


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017): self-attention when ``context`` is None, else
    cross-attention from ``x`` to ``context`` (whose width ``context_dim`` may differ)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 context_dim: int | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.query = nn.Linear(dim, dim, bias=bias)
        self.key_value = nn.Linear(context_dim or dim, 2 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, heads, T, D/heads)
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """``x``: (B, T, dim); ``context``: (B, S, context_dim); ``key_padding_mask``: (B, S or T),
        True at padding; ``causal``: each query sees only keys up to its own position."""
        return self.attend(x, *self.project_kv(x if context is None else context), key_padding_mask, causal)

    def project_kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``source`` (B, S, dim), each (B, heads, S, dim/heads): computed once
        and reused by incremental decoding (cross-attention memory, self-attention cache)."""
        k, v = self.key_value(source).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               key_padding_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """Queries from ``x`` (B, T, dim) over projected keys/values (see :meth:`project_kv`)."""
        q = self._heads(self.query(x))
        dropout = self.dropout if self.training else 0.0
        if causal and key_padding_mask is None and q.shape[2] == k.shape[2]:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            mask = attention_mask(key_padding_mask, q.shape[2], k.shape[2], causal, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.out(y.transpose(1, 2).flatten(2))


class SinusoidalPositions(nn.Module):
    """Fixed sine/cosine position encodings (Vaswani et al. 2017), added to scaled embeddings."""

    def __init__(self, dim: int, max_len: int = 4096) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq[: dim // 2])
        # not persistent: recomputed on construction, so checkpoints stay independent of max_len
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``x``: (B, T, dim) -> ``x`` plus the encodings of positions ``offset .. offset+T-1``."""
        if offset + x.shape[1] > self.table.shape[0]:
            raise ValueError(f"sequence of {offset + x.shape[1]} positions exceeds max_len={self.table.shape[0]}")
        return x + self.table[offset: offset + x.shape[1]]


class FeedForward(nn.Sequential):
    """Position-wise MLP: Linear -> GELU -> dropout -> Linear."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class EncoderLayer(nn.Module):
    """Pre-LN Transformer encoder layer (Xiong et al. 2020): LayerNorm before each sub-layer keeps
    gradients well-scaled at initialisation, so it trains without a long warm-up.

    ``attention_dropout`` (None: ``dropout``) drops attention weights. At 0, SDPA may take its
    fused kernel (no weights materialised) on CPU as on GPU; above 0, CPUs fall back to the
    unfused path (docs/benchmarks.md)."""

    def __init__(self, dim: int, num_heads: int, ff_hidden: int, dropout: float = 0.1,
                 attention_dropout: float | None = None) -> None:
        super().__init__()
        self.attn_norm, self.ff_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, dropout if attention_dropout is None else attention_dropout)
        self.ff = FeedForward(dim, ff_hidden, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), key_padding_mask=key_padding_mask))
        return x + self.drop(self.ff(self.ff_norm(x)))


class DecoderLayer(nn.Module):
    """Pre-LN Transformer decoder layer: causal self-attention, cross-attention to the encoder
    memory, feed-forward. ``past`` holds the self-attention keys/values of earlier positions, so
    decoding one token at a time costs one position per step instead of the whole prefix.
    ``attention_dropout`` as in :class:`EncoderLayer`."""

    def __init__(self, dim: int, num_heads: int, ff_hidden: int, dropout: float = 0.1,
                 attention_dropout: float | None = None) -> None:
        super().__init__()
        self.self_norm, self.cross_norm, self.ff_norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.self_attn = MultiHeadAttention(dim, num_heads, attention_dropout)
        self.cross_attn = MultiHeadAttention(dim, num_heads, attention_dropout)
        self.ff = FeedForward(dim, ff_hidden, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor],
                memory_padding_mask: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x``: (B, T, dim), the positions after those in ``past``; ``memory_kv``: the encoder
        output through ``cross_attn.project_kv``. Returns the new ``x`` and the keys/values of all
        positions so far (the next call's ``past``)."""
        h = self.self_norm(x)
        k, v = self.self_attn.project_kv(h)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        x = x + self.drop(self.self_attn.attend(h, k, v, causal=x.shape[1] > 1))
        x = x + self.drop(self.cross_attn.attend(self.cross_norm(x), *memory_kv, key_padding_mask=memory_padding_mask))
        return x + self.drop(self.ff(self.ff_norm(x))), (k, v)


class SelfAttention2d(nn.Module):
    """Self-attention over the positions of a feature map (SAGAN, Zhang et al. 2019, section 3):
    every position attends to every other, so distant parts of an image can agree (convolutions
    only see a neighbourhood).

    As in the paper, 1x1 convolutions map ``(B, C, H, W)`` to queries f(x), keys g(x) and values
    h(x) of ``C / reduction`` channels (the paper's C-bar = C/8: it found no loss from the
    narrowing, and the projections and dot products take 8x fewer operations than at width C), the
    ``H * W`` positions attend with unscaled dot products (softmax(f^T g), no 1/sqrt(d)), a fourth
    1x1 convolution v maps the result back to C channels, and the block returns
    ``x + gamma * v(...)``. ``gamma`` is a learned
    scalar initialised at 0, so the block starts as the identity and the net learns how much
    non-local evidence to use. ``num_heads`` splits the C-bar channels into heads (1 in SAGAN)."""

    def __init__(self, channels: int, num_heads: int = 1, reduction: int = 8, bias: bool = True) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        if inner % num_heads:
            raise ValueError(f"num_heads={num_heads} does not divide the {inner} attention channels "
                             f"(channels={channels} // reduction={reduction})")
        self.num_heads = num_heads
        self.query, self.key, self.value = (nn.Conv2d(channels, inner, 1, bias=bias) for _ in range(3))
        self.out = nn.Conv2d(inner, channels, 1, bias=bias)
        self.gamma = nn.Parameter(torch.zeros(()))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, C', H, W) -> (B, heads, H*W, C'/heads)
        return x.flatten(2).unflatten(1, (self.num_heads, -1)).transpose(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        y = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, heads, H*W, C'/heads)
        return x + self.gamma * self.out(y.transpose(2, 3).reshape(b, -1, h, w))

"""The shared attention module against a plain softmax-attention reference."""

import pytest
import torch

from src.models.nets.attention import (
    EncoderLayer,
    MultiHeadAttention,
    SinusoidalPositions,
)
from src.models.nets.transformer import TransformerSeq2Seq


def reference(mha: MultiHeadAttention, x, context, pad, causal):
    """softmax(QK^T/sqrt(d) + mask) V, written out, with -inf at masked keys."""
    source = x if context is None else context
    q = mha._heads(mha.query(x))
    k, v = map(mha._heads, mha.key_value(source).chunk(2, dim=-1))
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if pad is not None:
        scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    if causal:
        t, s = scores.shape[-2:]
        scores = scores.masked_fill(~torch.ones(t, s, dtype=torch.bool).tril(s - t), float("-inf"))
    return mha.out((scores.softmax(-1) @ v).transpose(1, 2).flatten(2))


@pytest.mark.parametrize("cross, use_pad, causal", [(False, False, False), (False, True, False), (False, False, True),
                                                    (False, True, True), (True, True, False)])
def test_matches_reference(cross: bool, use_pad: bool, causal: bool) -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, context_dim=8 if cross else None).eval()
    x = torch.randn(3, 5, 16)
    context = torch.randn(3, 7, 8) if cross else None
    s = 7 if cross else 5
    pad = torch.zeros(3, s, dtype=torch.bool)
    pad[1, -2:] = True  # last two keys of item 1 are padding
    pad = pad if use_pad else None
    torch.testing.assert_close(mha(x, context, pad, causal), reference(mha, x, context, pad, causal))


def test_padding_does_not_change_unpadded_items() -> None:
    torch.manual_seed(0)
    layer = EncoderLayer(16, 4, 32, dropout=0.0).eval()
    x = torch.randn(1, 4, 16)
    padded = torch.cat([x, torch.randn(1, 3, 16)], dim=1)
    pad = torch.tensor([[False] * 4 + [True] * 3])
    torch.testing.assert_close(layer(padded, pad)[:, :4], layer(x))


def test_sinusoidal_positions_offset() -> None:
    pos = SinusoidalPositions(8, max_len=16)
    x = torch.zeros(1, 10, 8)
    torch.testing.assert_close(pos(x[:, 6:], offset=6), pos(x)[:, 6:])
    with pytest.raises(ValueError, match="max_len=16"):
        pos(torch.zeros(1, 17, 8))


def test_decoder_layer_cache_matches_full_sequence() -> None:
    """Decoding one position at a time with the key/value cache == the whole causal sequence."""
    from src.models.nets.attention import DecoderLayer

    torch.manual_seed(0)
    layer = DecoderLayer(16, 4, 32, dropout=0.0).eval()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[0, -3:] = True
    memory_kv = layer.cross_attn.project_kv(memory)
    full, _ = layer(x, memory_kv, pad)
    past, steps = None, []
    for t in range(5):
        y, past = layer(x[:, t: t + 1], memory_kv, pad, past=past)
        steps.append(y)
    torch.testing.assert_close(torch.cat(steps, 1), full)
    assert past[0].shape == (2, 4, 5, 4)
    # two positions at once after a cached prefix (causal within the chunk)
    _, prefix = layer(x[:, :3], memory_kv, pad)
    chunk, _ = layer(x[:, 3:], memory_kv, pad, past=prefix)
    torch.testing.assert_close(chunk, full[:, 3:])


def test_attention_dropout_defaults_to_dropout_and_zero_keeps_training_attention_deterministic() -> None:
    same = TransformerSeq2Seq(20, 0, 1, 2, dim=8, num_heads=2, encoder_layers=1, decoder_layers=1, ff_hidden=16,
                              dropout=0.1)
    assert same.encoder[0].attn.dropout == same.decoder[0].cross_attn.dropout == 0.1
    layer = EncoderLayer(8, 2, 16, dropout=0.0, attention_dropout=0.0).train()
    x = torch.randn(2, 5, 8)
    assert torch.equal(layer(x), layer(x))  # no dropout anywhere, in training mode
    layer = EncoderLayer(8, 2, 16, dropout=0.0, attention_dropout=0.5).train()
    assert not torch.equal(layer(x), layer(x))  # only the attention weights are dropped

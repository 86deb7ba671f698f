"""One decoding implementation for the sequence-to-sequence nets written here (Transformer,
pointer-generator LSTM): batched greedy search and beam search with length penalty, no-repeat
n-gram blocking and min/max length.

A net plugs in through a small incremental interface, so no step recomputes the prefix:

- ``net.encode(source) -> state``: a dict of batch-first tensors. Entries whose name starts with
  ``memory`` (encoder output, source padding, cross-attention keys/values) are the same for every
  hypothesis of an example and are never reordered between beam steps;
- ``net.step(tokens, state) -> (log_probs, state)``: feed one token per row (B,), get the
  next-token log-probabilities (B, V) and the updated state;
- ``net.bos_id``, ``net.eos_id``, ``net.pad_id``.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

State = dict[str, torch.Tensor]


class Seq2SeqOutput(NamedTuple):
    """Teacher-forced output of a net: ``logits`` (B, T, V) of each target token, unnormalised or
    already log-probabilities (the pointer-generator's mixture); ``log_softmax`` gives the
    log-probabilities either way, so a cross-entropy loss takes both. Plus an auxiliary loss to
    add to it (the pointer-generator's coverage loss), or None."""

    logits: torch.Tensor
    aux_loss: torch.Tensor | None = None


class IncrementalDecoder(Protocol):
    bos_id: int
    eos_id: int
    pad_id: int

    def encode(self, source: torch.Tensor) -> State: ...

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]: ...


def _select(state: State, index: torch.Tensor, expand: bool = False) -> State:
    """Rows ``index`` of every per-hypothesis entry; with ``expand`` of the ``memory*`` ones too."""
    return {k: v if (k.startswith("memory") and not expand) else v.index_select(0, index) for k, v in state.items()}


def ban_repeated_ngrams(log_probs: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """-inf at every token that would complete an ``n``-gram already present in ``tokens`` (N, t)."""
    if n <= 0 or tokens.shape[1] < n:
        return log_probs
    grams = tokens.unfold(1, n, 1)  # (N, t - n + 1, n)
    prefix = tokens[:, tokens.shape[1] - n + 1:]  # the last n - 1 tokens
    match = (grams[:, :, :-1] == prefix[:, None, :]).all(-1) if n > 1 else torch.ones_like(grams[..., 0], dtype=torch.bool)
    banned = torch.zeros_like(log_probs).scatter_add_(1, grams[:, :, -1], match.to(log_probs.dtype)) > 0
    return log_probs.masked_fill(banned, float("-inf"))


def _process(log_probs: torch.Tensor, tokens: torch.Tensor, eos_id: int, pad_id: int, min_len: int,
             no_repeat_ngram: int) -> torch.Tensor:
    """Constraints shared by greedy and beam search: padding is never generated, no end before
    ``min_len`` tokens, no repeated n-grams."""
    log_probs = log_probs.clone()
    log_probs[:, pad_id] = float("-inf")
    if tokens.shape[1] < min_len:
        log_probs[:, eos_id] = float("-inf")
    return ban_repeated_ngrams(log_probs, tokens, no_repeat_ngram)


@torch.no_grad()
def greedy_search(net: IncrementalDecoder, source: torch.Tensor, max_len: int = 100, min_len: int = 0,
                  no_repeat_ngram: int = 0) -> torch.Tensor:
    """The most likely token at each step, for the whole batch at once. Returns (B, L) token ids
    ending at ``eos_id`` (included) or after ``max_len`` tokens, padded with ``pad_id``."""
    state = net.encode(source)
    batch = source.shape[0]
    tokens = source.new_empty(batch, 0)
    last = source.new_full((batch,), net.bos_id)
    done = torch.zeros(batch, dtype=torch.bool, device=source.device)
    for _ in range(max_len):
        log_probs, state = net.step(last, state)
        last = _process(log_probs, tokens, net.eos_id, net.pad_id, min_len, no_repeat_ngram).argmax(-1)
        last = last.masked_fill(done, net.pad_id)
        tokens = torch.cat([tokens, last[:, None]], dim=1)
        done |= last == net.eos_id
        if done.all():
            break
    return tokens


@torch.no_grad()
def beam_search(net: IncrementalDecoder, source: torch.Tensor, beam_size: int = 4, max_len: int = 100,
                min_len: int = 0, length_penalty: float = 1.0, no_repeat_ngram: int = 0) -> torch.Tensor:
    """Batched beam search. Each step keeps the ``beam_size`` best unfinished hypotheses of every
    example among its 2 x ``beam_size`` best extensions; a hypothesis that ends (``eos_id``) joins
    the example's finished list, ranked by ``log p / length ** length_penalty``. An example is done
    when its worst finished hypothesis beats the best unfinished one's normalised score (the
    Hugging Face heuristic), so ``beam_size=1`` returns exactly the greedy output.
    Returns (B, L) token ids of the best hypothesis per example, padded with ``pad_id``."""
    batch, k, device = source.shape[0], beam_size, source.device
    state = _select(net.encode(source), torch.arange(batch, device=device).repeat_interleave(k), expand=True)
    tokens = source.new_empty(batch * k, 0)
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    last = source.new_full((batch * k,), net.bos_id)
    fin_scores = torch.full((batch, k), float("-inf"), device=device)
    fin_tokens = source.new_full((batch, k, max_len), net.pad_id)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    offsets = (torch.arange(batch, device=device) * k)[:, None]
    for t in range(max_len):
        log_probs, state = net.step(last, state)
        log_probs = _process(log_probs, tokens, net.eos_id, net.pad_id, min_len, no_repeat_ngram)
        vocab = log_probs.shape[-1]
        cand = (scores.view(-1, 1) + log_probs).view(batch, k * vocab)
        top_scores, top_idx = cand.topk(2 * k, dim=1)  # sorted, best first
        beam, token = top_idx // vocab, top_idx % vocab
        rows = (offsets + beam).view(-1)
        extended = torch.cat([tokens.index_select(0, rows), token.view(-1, 1)], dim=1).view(batch, 2 * k, t + 1)
        # finished: an eos among the top k extensions of an example still searching
        is_eos = token == net.eos_id
        ends = is_eos & (torch.arange(2 * k, device=device) < k) & ~done[:, None]
        normalised = torch.where(ends, top_scores / (t + 1) ** length_penalty, float("-inf"))
        padded = torch.nn.functional.pad(extended, (0, max_len - t - 1), value=net.pad_id)
        fin_scores, keep = torch.cat([fin_scores, normalised], dim=1).topk(k, dim=1)
        fin_tokens = torch.cat([fin_tokens, padded], dim=1).gather(1, keep[:, :, None].expand(-1, -1, max_len))
        # running: the best k extensions that do not end
        run_scores, run_pick = top_scores.masked_fill(is_eos, float("-inf")).topk(k, dim=1)
        scores = run_scores
        pick_rows = run_pick + torch.arange(batch, device=device)[:, None] * (2 * k)
        tokens = extended.view(batch * 2 * k, t + 1).index_select(0, pick_rows.view(-1))
        last = token.view(-1).index_select(0, pick_rows.view(-1))
        state = _select(state, rows.view(batch, 2 * k).view(-1).index_select(0, pick_rows.view(-1)))
        best_running = scores[:, 0] / (t + 1) ** length_penalty
        done |= fin_scores[:, -1] >= best_running
        if done.all():
            break
    # examples still searching at max_len: their running hypotheses compete too
    running = torch.where(done[:, None], float("-inf"), scores / tokens.shape[1] ** length_penalty)
    padded = torch.nn.functional.pad(tokens, (0, max_len - tokens.shape[1]), value=net.pad_id).view(batch, k, max_len)
    all_scores = torch.cat([fin_scores, running], dim=1)
    best = all_scores.argmax(dim=1)
    out = torch.cat([fin_tokens, padded], dim=1)[torch.arange(batch, device=device), best]
    length = int((out != net.pad_id).sum(1).max())
    return out[:, : max(length, 1)]


def generate(net: IncrementalDecoder, source: torch.Tensor, beam_size: int = 1, max_len: int = 100, min_len: int = 0,
             length_penalty: float = 1.0, no_repeat_ngram: int = 0) -> torch.Tensor:
    """Greedy search for ``beam_size=1`` (same result, less work), beam search otherwise."""
    if beam_size == 1:
        return greedy_search(net, source, max_len, min_len, no_repeat_ngram)
    return beam_search(net, source, beam_size, max_len, min_len, length_penalty, no_repeat_ngram)

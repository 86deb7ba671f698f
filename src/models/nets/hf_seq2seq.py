"""Any Hugging Face ``AutoModelForSeq2SeqLM`` (T5, BART, ...) behind the seq2seq net interface."""

from __future__ import annotations

import torch
from torch import nn

from src.core.errors import ConfigError, describe
from src.core.weights import hf_from_pretrained
from src.models.nets.decoding import Seq2SeqOutput


class HFSeq2Seq(nn.Module):
    """``name``: a hub name (``t5-small``, ``facebook/bart-base``; online) or a local folder saved
    with ``save_pretrained``. ``pretrained=false`` builds the same architecture from its config
    with random weights. Decoding goes through the model's own ``generate``; the data must use the
    model's tokenizer (``data.tokenizer.name`` = the same name)."""

    def __init__(self, name: str, pad_id: int, pretrained: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModelForSeq2SeqLM

        try:
            if pretrained:  # the load table is saved into the run folder by train.py
                self.model, self.load_report = hf_from_pretrained(AutoModelForSeq2SeqLM, name)
            else:
                self.model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(name))
        except Exception as e:  # OSError offline or for an unknown name, ValueError for a non-seq2seq model
            raise ConfigError(f"model.net.name={name} could not be loaded as a seq2seq model ({describe(e, 160)}); "
                              "give a hub name (online) or a local folder saved with save_pretrained") from e
        self.pad_id, self.vocab_size = pad_id, self.model.config.vocab_size

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> Seq2SeqOutput:
        """The model shifts ``labels`` right itself (its own decoder start token)."""
        out = self.model(input_ids=source, attention_mask=source != self.pad_id,
                         labels=target.masked_fill(target == self.pad_id, -100))
        return Seq2SeqOutput(out.logits)

    @torch.no_grad()
    def generate(self, source: torch.Tensor, beam_size: int = 1, max_len: int = 100, min_len: int = 0,
                 length_penalty: float = 1.0, no_repeat_ngram: int = 0) -> torch.Tensor:
        """Token ids (B, L) after the decoder start token, as :func:`decoding.generate` returns."""
        out = self.model.generate(
            input_ids=source, attention_mask=source != self.pad_id, num_beams=beam_size, max_new_tokens=max_len,
            min_new_tokens=min_len, length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram,
            do_sample=False, early_stopping=False)
        return out[:, 1:]

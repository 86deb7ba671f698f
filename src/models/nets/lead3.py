"""Lead-3 (extractive baseline of CNN/DailyMail): the first sentences of the article."""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

# A sentence ends at . ! ? (then closing quotes/brackets) before whitespace. In cased text the
# next sentence starts with a capital, digit or opening quote; in tokenized text (See et al.'s
# lowercased format) the terminator is a token of its own (" . ").
_BOUNDARY = re.compile(r"(?P<tok>\s)?[.!?]['\"’”)]*\s+(?=(?P<next>.))")
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Gen|Gov|Sen|Rep|Lt|Col|Sgt|Capt|No|vs|Inc|Co|Corp)"
                           r"|\b[A-Z](?:\.[A-Z])*)\.$")


def split_sentences(text: str) -> list[str]:
    """Sentences of an article, by rule (nltk's punkt model is a run-time download): split after a
    terminator when the next sentence starts like one, except after common abbreviations and
    initials (``Mr.``, ``U.S.``)."""
    sentences, start = [], 0
    for m in _BOUNDARY.finditer(text):
        head = text[start: m.end()].rstrip()
        if m.group("tok") is None and not re.match(r"[A-Z0-9\"'“‘(]", m.group("next")):
            continue
        if m.group("tok") is None and _ABBREVIATION.search(head.rstrip("'\"’”)")):
            continue
        sentences.append(head)
        start = m.end()
    tail = text[start:].strip()
    return [s for s in [*sentences, tail] if s]


class Lead3(nn.Module):
    """No weights: summarizes article texts, not token ids (``extractive``), so it needs neither a
    tokenizer nor training, and ``python eval.py model=lead3 data=cnn_dailymail`` runs without a
    checkpoint."""

    extractive = True

    def __init__(self, sentences: int = 3) -> None:
        super().__init__()
        self.sentences = sentences

    def summarize(self, articles: Sequence[str]) -> list[str]:
        """The first ``sentences`` sentences of each article, one per line."""
        return ["\n".join(split_sentences(a)[: self.sentences]) for a in articles]

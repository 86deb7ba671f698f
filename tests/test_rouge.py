"""ROUGE equals Google's rouge-score on the same pairs; Lead-3's sentence splitting."""

import pytest
from rouge_score import rouge_scorer

from src.metrics.rouge import ROUGE, ROUGE_KEYS
from src.models.nets.lead3 import Lead3, split_sentences

PAIRS = [  # (prediction, reference): one sentence per line, as CNN/DailyMail highlights
    ("The cats were running home.\nIt rained all day.", "A cat ran home .\nRain fell all day long ."),
    ("police arrest two men after the robbery .", "two men were arrested by police .\nthe robbery happened on monday ."),
    ("Nothing in common here.", "Completely different words."),
    ("Same text.\nTwice over.", "Same text.\nTwice over."),
    ("order matters\nfor lcs summary", "for lcs summary\norder matters"),
]


def test_equals_rouge_score_package() -> None:
    metric = ROUGE()
    metric.update([p for p, _ in PAIRS[:2]], [r for _, r in PAIRS[:2]])  # several updates, as batches
    metric.update([p for p, _ in PAIRS[2:]], [r for _, r in PAIRS[2:]])
    got = metric.compute()
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    scores = [scorer.score(ref, pred) for pred, ref in PAIRS]
    for key in ROUGE_KEYS:
        expected = sum(s[key].fmeasure for s in scores) / len(scores)
        assert got[key].item() == pytest.approx(expected, abs=1e-6), key
    # stemming is on ("running"/"ran" aside, "cats" matches "cat") and Lsum reads the lines:
    # swapped sentences keep Lsum at 1 while plain LCS drops
    single = ROUGE()
    single.update([PAIRS[4][0]], [PAIRS[4][1]])
    s = single.compute()
    assert s["rougeLsum"] == pytest.approx(1.0) and s["rougeL"] < 0.7


def test_reset_and_empty() -> None:
    metric = ROUGE()
    with pytest.warns(UserWarning, match="called before the ``update`` method"):
        assert all(v == 0 for v in metric.compute().values())
    metric.update(["a b c"], ["a b c"])
    assert metric.compute()["rouge1"] == pytest.approx(1.0)
    metric.reset()
    metric.update(["a b c"], ["x y z"])
    assert metric.compute()["rouge1"] == 0
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        metric.update(["a", "b"], ["a"])


def test_sentences_of_cased_text() -> None:
    text = ('(CNN)Mr. Smith met U.S. officials on Monday. "It went well," he said. Talks go on! '
            "Prices rose 3.5 percent. Was it J. R. R. Tolkien? Yes.")
    assert split_sentences(text) == [
        "(CNN)Mr. Smith met U.S. officials on Monday.", '"It went well," he said.', "Talks go on!",
        "Prices rose 3.5 percent.", "Was it J. R. R. Tolkien?", "Yes."]


def test_sentences_of_tokenized_text() -> None:
    """See et al.'s lowercased PTB-tokenized format: terminators are tokens of their own."""
    text = "marseille , france ( cnn ) the prosecutor spoke . all 150 on board were killed . why ? no one knows"
    assert split_sentences(text) == ["marseille , france ( cnn ) the prosecutor spoke .", "all 150 on board were killed .",
                                     "why ?", "no one knows"]


def test_lead3_takes_three_sentences_one_per_line() -> None:
    article = "One is here. Two is there. Three is near. Four is far."
    assert Lead3().summarize([article, "Only one."]) == ["One is here.\nTwo is there.\nThree is near.", "Only one."]
    assert Lead3(sentences=1).summarize([article]) == ["One is here."]
    assert not list(Lead3().parameters())

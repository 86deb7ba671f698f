"""(article, summary) pairs: JSON Lines files (``.jsonl`` or ``.jsonl.gz``, rows ``{id, article,
highlights}``), CSV files (``.csv`` or ``.csv.gz``, a header row with ``article,highlights`` and
optionally ``id``) or a split of a Hugging Face hub dataset for online users."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.core.errors import DataError, describe
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


@dataclass(frozen=True)
class Pairs:
    """One split as parallel lists: ``ids``, ``articles``, ``highlights`` (one sentence a line)."""

    ids: list[str]
    articles: list[str]
    highlights: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, n: int | None) -> Pairs:
        return self if n is None else Pairs(self.ids[:n], self.articles[:n], self.highlights[:n])


def _valid(row: Any) -> bool:
    return (isinstance(row, dict) and isinstance(row.get("article"), str) and isinstance(row.get("highlights"), str)
            and bool(row["article"].strip()) and bool(row["highlights"].strip()))


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz"))


def _collect(path: Path, rows: Iterable[tuple[int, Any]], layout: str) -> Pairs:
    """The valid rows of a file as Pairs; empty or malformed rows (None: unparsable) are skipped
    and counted in one warning: one bad line should not stop a run."""
    ids, articles, highlights, skipped = [], [], [], 0
    for n, row in rows:
        if not _valid(row):
            skipped += 1
            continue
        ids.append(str(row.get("id") or f"{path.name}:{n}"))
        articles.append(row["article"].strip())
        highlights.append(row["highlights"].strip())
    if skipped:
        log.warning(f"{path}: skipped {skipped} empty or malformed rows of {skipped + len(ids)}")
    if not ids:
        raise DataError(f"{path} holds no usable rows (each one {layout} with non-empty 'article' and 'highlights')")
    return Pairs(ids, articles, highlights)


def _json_rows(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for n, line in enumerate(lines):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError:
                yield n, None


def read_csv(path: Path) -> Pairs:
    """Rows of a ``.csv`` or ``.csv.gz`` file with a header naming ``article`` and ``highlights``
    (``id`` optional; other columns ignored); quoted fields may span lines."""
    opener = gzip.open if path.suffix == ".gz" else open
    csv.field_size_limit(2**31 - 1)  # an article is longer than csv's default 128 KiB field limit at times
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"article", "highlights"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path} has no {' or '.join(sorted(missing))} column (header: "
                                f"{','.join(reader.fieldnames or []) or 'none'}); name the columns article,highlights[,id]")
            return _collect(path, enumerate(reader), "a CSV row")
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path} could not be read ({describe(e)}); replace the file (CSV with article,highlights "
                        "columns)") from e


def read_jsonl(path: Path) -> Pairs:
    """Rows ``{id, article, highlights}`` of a ``.jsonl`` or ``.jsonl.gz`` file (a ``.csv[.gz]``
    file: :func:`read_csv`)."""
    if _is_csv(path):
        return read_csv(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return _collect(path, _json_rows(f), "a JSON line")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{path} could not be read ({describe(e)}); replace the file (JSON Lines with id, article, "
                        "highlights)") from e


def local_split_file(folder: Path, split: str) -> Path | None:
    for name in (f"{split}.jsonl", f"{split}.jsonl.gz", f"{split}.csv", f"{split}.csv.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def download_split(hf_dataset: str, hf_config: str | None, split: str) -> Pairs:
    """A split from the Hugging Face hub (online users); raises on any failure."""
    from datasets import load_dataset

    ds = load_dataset(hf_dataset, hf_config, split=split)
    rows = [r for r in ds if _valid(r)]
    if len(rows) < len(ds):
        log.warning(f"{hf_dataset}/{split}: skipped {len(ds) - len(rows)} empty or malformed rows of {len(ds)}")
    return Pairs([str(r.get("id", i)) for i, r in enumerate(rows)], [r["article"].strip() for r in rows],
                 [r["highlights"].strip() for r in rows])

"""Visual question answering data: easy-VQA (:mod:`src.data.sources.easy_vqa`) or a user's folder
of images and JSON Lines questions (:mod:`src.data.sources.vqa_folder`), each image served with
every question asked about it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import v2

from src.core.errors import DataError
from src.data.common import augmentation, loader, per_device_batch_size
from src.data.inputs import field, read_image, text_field
from src.data.sources.easy_vqa import EASY_VQA_STATS, VQASplit, easy_vqa_root, hold_out, load_easy_vqa
from src.data.sources.vqa_folder import answer_type, vqa_folder
from src.data.tokenizers import WORD_PAD, pretrained_tokenizer, word_level_tokenizer

SHAPES = ("circle", "rectangle", "triangle")
# What a question asks about, told by the kind of answer it has.
QUESTION_TYPES = ("shape", "color", "yes_no")


def question_type(answer: str) -> int:
    """Index into :data:`QUESTION_TYPES` of a question with this answer."""
    return 2 if answer in ("yes", "no") else 0 if answer in SHAPES else 1


def question_encoder(tokenizer_name: str | None, vocabulary: Sequence[str]) -> tuple[Callable[[Sequence[str]], torch.Tensor], int]:
    """What turns questions into token ids ``(N, max_len)`` padded with id 0, and the vocabulary
    size: the word-level vocabulary of ``vocabulary`` (training questions), or a pretrained HF
    tokenizer (name or local path)."""
    if tokenizer_name is None:
        tokenizer = word_level_tokenizer(vocabulary)
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id(WORD_PAD), pad_token=WORD_PAD)
        return lambda questions: torch.tensor([e.ids for e in tokenizer.encode_batch(list(questions))]), \
            tokenizer.get_vocab_size()
    tokenizer = pretrained_tokenizer(tokenizer_name, "data.tokenizer", "data.tokenizer=null (vocabulary of the training questions)")
    if tokenizer.pad_token_id != 0:
        raise DataError(f"tokenizer {tokenizer_name!r} pads with id {tokenizer.pad_token_id}; the text encoders "
                        "expect padding id 0")
    return lambda questions: tokenizer(list(questions), padding=True, return_tensors="pt")["input_ids"], len(tokenizer)


class VQADataset(Dataset):
    """Items are images with every question asked about them, so a batch runs the image
    encoder once per image, not once per question (easy-VQA has ~10 questions per image)."""

    def __init__(self, images: torch.Tensor, image_rows: torch.Tensor, tokens: torch.Tensor,
                 answers: torch.Tensor, types: torch.Tensor, question_image: torch.Tensor) -> None:
        self.images, self.image_rows, self.tokens, self.answers, self.types = images, image_rows, tokens, answers, types
        order = torch.argsort(question_image, stable=True)
        counts = torch.bincount(question_image, minlength=len(images))
        self.questions_of = dict(zip(range(len(images)), order.split(counts.tolist())))
        self.num_questions = sum(len(self.questions_of[int(r)]) for r in image_rows)

    def __len__(self) -> int:
        return len(self.image_rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = int(self.image_rows[i])
        q = self.questions_of[row]
        return {"image": self.images[row], "question": self.tokens[q], "answer": self.answers[q],
                "type": self.types[q], "question_index": q}


class VQACollate:
    """Stack the images, normalise them as a batch (with the data's per-channel ``stats``, mean
    and std), and concatenate their questions; each question keeps the row of its image in
    ``image_index``. Questions are padded (id 0) to the longest of the batch."""

    def __init__(self, augment: v2.Transform | None, stats: tuple[Sequence[float], Sequence[float]] = EASY_VQA_STATS) -> None:
        self.augment = augment
        self.normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(*stats)])

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        images = default_collate([self.augment(it["image"]) if self.augment else it["image"] for it in items])
        batch = {key: torch.cat([it[key] for it in items]) for key in ("answer", "type", "question_index")}
        width = max(it["question"].shape[1] for it in items)  # predict.py's questions come one by one
        batch["question"] = torch.cat([F.pad(it["question"], (0, width - it["question"].shape[1])) for it in items])
        counts = torch.tensor([len(it["answer"]) for it in items])
        batch["image_index"] = torch.repeat_interleave(torch.arange(len(items)), counts)
        batch["question"] = batch["question"][:, : int((batch["question"] != 0).sum(1).max())]
        batch["image"] = self.normalize(images)
        return batch


class VQADataModule(LightningDataModule):
    """VQA batches of ``{image, question, answer, type, image_index, question_index}``.

    ``source`` picks the data: easy-VQA (``auto``, ``package``, ``local``) or ``folder``, a user's
    folder ``root`` (its images resized to ``image_size``; ``test_size`` of its images drawn for
    testing without a test.jsonl). A split without its own files holds out ``val_size`` of the
    training *images* (with all their questions, so no image is seen in both) with
    ``split_seed``. ``mean``/``std`` normalise (default: easy-VQA's). ``batch_size`` counts
    images (global, divided across devices); a batch holds every question of its images.
    """

    input_kind = "vqa"

    def __init__(
        self,
        provides: Mapping[str, Any],
        data_dir: str = "data/",
        source: str = "auto",
        root: str | None = None,
        image_size: int = 64,
        test_size: float = 0.2,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        tokenizer: str | None = None,
        batch_size: int = 64,
        val_size: float = 0.1,
        split_seed: int = 42,
        augment: str = "none",
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.provides = dict(provides)
        self.augment = augmentation(augment, self.provides["image_shape"][-1])
        self.stats = (tuple(mean), tuple(std)) if mean and std else EASY_VQA_STATS
        self.batch_size_per_device = batch_size
        self.answers: list[str] = []
        self.question_types: list[str] = []
        self.type_of: Callable[[str], int] = question_type  # answer -> index into question_types
        self.test_questions: list[str] = []
        self.data_train: VQADataset | None = None
        self.data_val: VQADataset | None = None
        self.data_test: VQADataset | None = None

    def _check_provides(self, image_shape: list[int], vocab_size: int) -> None:
        found = {"image_shape": image_shape, "vocab_size": vocab_size, "num_answers": len(self.answers),
                 "answers": self.answers, "question_types": self.question_types}
        wrong = {k: v for k, v in found.items() if self.provides.get(k) != v}
        if wrong:
            fix = " ".join(f"data.provides.{k}={v}".replace(" ", "") for k, v in wrong.items())
            raise DataError(f"data (source={self.hparams.source}) declares {', '.join(f'{k}={self.provides.get(k)}' for k in wrong)} "
                            f"but the data and tokenizer give {', '.join(f'{k}={v}' for k, v in wrong.items())}; "
                            f"fix the provides block of its config (e.g. {fix})")

    def setup(self, stage: str | None = None) -> None:
        self.batch_size_per_device = per_device_batch_size(self.hparams.batch_size, self.trainer)
        if self.data_train is not None:
            return
        train, test, train_rows, val_rows = self._read()
        self.test_questions = test.questions
        is_train_question = torch.isin(train.image_ids, train_rows)
        vocabulary = [q for q, keep in zip(train.questions, is_train_question.tolist()) if keep]

        self.encode_questions, vocab_size = question_encoder(self.hparams.tokenizer, vocabulary)
        tokens = self.encode_questions(train.questions + test.questions)
        self._check_provides(list(train.images.shape[1:]), vocab_size)
        index = {a: i for i, a in enumerate(self.answers)}
        try:
            answers = torch.tensor([index[a] for a in train.answers + test.answers])
        except KeyError as e:
            raise DataError(f"easy-VQA answer {e} is not in its answers.txt; the data is corrupt") from e
        types = torch.tensor([self.type_of(a) for a in train.answers + test.answers])
        n = len(train.questions)
        split = lambda x: (x[:n], x[n:])  # noqa: E731  (train questions first, then test)
        (tok_tr, tok_te), (ans_tr, ans_te), (typ_tr, typ_te) = split(tokens), split(answers), split(types)
        self.data_train = VQADataset(train.images, train_rows, tok_tr, ans_tr, typ_tr, train.image_ids)
        self.data_val = VQADataset(train.images, val_rows, tok_tr, ans_tr, typ_tr, train.image_ids)
        self.data_test = VQADataset(test.images, torch.arange(len(test.images)), tok_te, ans_te, typ_te, test.image_ids)

    def _read(self) -> tuple[VQASplit, VQASplit, torch.Tensor, torch.Tensor]:
        """The training split (validation images included), the test split, and the training
        split's image rows that train and that validate; sets the answers and question types."""
        hp = self.hparams
        if hp.source == "folder":
            folder = vqa_folder(hp.root, hp.image_size, hp.test_size, hp.val_size, hp.split_seed)
            self.answers, self.question_types = folder.answers, folder.question_types
            self.type_of = lambda answer: self.question_types.index(answer_type(answer))
            return folder.train, folder.test, folder.train_rows, folder.val_rows
        root = easy_vqa_root(hp.source, hp.data_dir)
        train, test = load_easy_vqa(root, "train"), load_easy_vqa(root, "test")
        self.answers = (root / "answers.txt").read_text().split()
        self.question_types, self.type_of = list(QUESTION_TYPES), question_type
        train_rows, val_rows = hold_out(len(train.images), hp.val_size, hp.split_seed, "data.val_size")
        return train, test, train_rows, val_rows

    # -- predict.py: a user's (image, question) rows --------------------------------------------
    def prepare_inputs(self) -> None:
        """The question vocabulary is that of the training questions: read them."""
        self.setup("predict")

    def encode(self, row: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """One image with its one question, as :class:`VQADataset` serves an image with its own."""
        question = text_field(row, "question")
        return {"image": read_image(field(row, "image"), self.provides["image_shape"]),
                "question": self.encode_questions([question]), "answer": torch.tensor([-1]),
                "type": torch.tensor([-1]), "question_index": torch.tensor([-1])}

    def input_collate(self) -> Callable[[list[dict[str, torch.Tensor]]], dict[str, torch.Tensor]]:
        return VQACollate(None, self.stats)

    def _loader(self, dataset: VQADataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return loader(dataset, self.batch_size_per_device, self.trainer, train, VQACollate(self.augment if train else None, self.stats),
                      self.hparams.num_workers, self.hparams.pin_memory)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data_train, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data_val, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data_test, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def test_batch(self, n: int) -> dict[str, torch.Tensor]:
        """The first ``n`` test images with their questions as one batch, as the test loader makes
        them: what compress.py calibrates and times the net on."""
        return VQACollate(None, self.stats)([self.data_test[i] for i in range(min(n, len(self.data_test)))])

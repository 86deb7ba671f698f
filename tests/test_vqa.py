"""Visual question answering on easy-VQA: data from the package and from a folder, every fusion
type, a learning test, checkpoints, error outputs, and the compatibility check."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.core.errors import ConfigError, DataError
from src.data.sources.easy_vqa import easy_vqa_root, load_easy_vqa
from src.data.tokenizers import word_level_tokenizer
from src.data.vqa import QUESTION_TYPES, VQADataModule
from src.models.nets.cnn import ConvFeatures
from src.models.nets.fusion import FUSIONS, VQANet
from src.models.nets.text import RNNTextEncoder
from src.utils.config import CONFIG_DIR, check_compatibility, compose
from tests.conftest import QUIET
from train import train

PROVIDES = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "data" / "easy_vqa.yaml").provides)
FAST = ["model=fusion", "data=easy_vqa", *QUIET]


@pytest.fixture(scope="module")
def package_data() -> VQADataModule:
    dm = VQADataModule(PROVIDES, data_dir="/nonexistent", source="auto", batch_size=8)
    dm.setup()
    return dm


def test_package_data_splits_by_image(package_data: VQADataModule) -> None:
    dm = package_data
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (3600, 400, 1000)
    assert dm.data_train.num_questions + dm.data_val.num_questions == 38575 and dm.data_test.num_questions == 9673
    assert not set(dm.data_train.image_rows.tolist()) & set(dm.data_val.image_rows.tolist())
    # README of the data: 7,136 yes/no test questions
    assert int((dm.data_test.types == QUESTION_TYPES.index("yes_no")).sum()) == 7136
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["image"].dtype == torch.float32
    q = len(batch["answer"])
    assert batch["question"].shape[0] == q and batch["image_index"].shape == (q,)
    assert int(batch["image_index"].max()) == 7 and (batch["question"][:, -1] != 0).any()  # padding trimmed


def test_local_folder_is_used_and_equals_package(data_dir: Path, package_data: VQADataModule) -> None:
    if not (data_dir / "easy-VQA").is_dir():
        pytest.skip(f"no easy-VQA in {data_dir}")
    assert easy_vqa_root("auto", str(data_dir)) == data_dir / "easy-VQA"
    local = load_easy_vqa(data_dir / "easy-VQA", "test")
    package = load_easy_vqa(easy_vqa_root("package", str(data_dir)), "test")
    assert torch.equal(local.images, package.images) and local.questions == package.questions


def test_missing_and_corrupt_folder_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="easy-VQA not found in .*use data.source=package"):
        easy_vqa_root("local", str(tmp_path))
    root = easy_vqa_root("package", str(tmp_path))
    shutil.copy(root / "answers.txt", tmp_path / "answers.txt")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "questions.json").write_text('[["what?", "red"')  # truncated
    with pytest.raises(DataError, match="test split in .* is missing or corrupt"):
        load_easy_vqa(tmp_path, "test")


def test_provides_mismatch_names_the_fix() -> None:
    dm = VQADataModule({**PROVIDES, "vocab_size": 50}, source="package")
    with pytest.raises(DataError, match=r"declares vocab_size=50 .* vocab_size=29.*data.provides.vocab_size=29"):
        dm.setup()


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_image_grouping_is_exact(fusion: str) -> None:
    """Questions sharing one image pass give the same logits as one image copy per question."""
    torch.manual_seed(0)
    net = VQANet(ConvFeatures(3, [8, 16, 16]), RNNTextEncoder(29, 16), 13, image_size=64, fusion=fusion, dim=16).eval()
    images, questions = torch.randn(3, 3, 64, 64), torch.randint(1, 29, (7, 5))
    questions[2, 3:] = 0  # a shorter question
    image_index = torch.tensor([2, 0, 0, 1, 2, 0, 1])  # unsorted, uneven
    grouped = net(images, questions, image_index)
    one_each = net(images[image_index], questions)
    torch.testing.assert_close(grouped, one_each, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_fast_dev_run_each_fusion(fusion: str, tmp_path: Path) -> None:
    cfg = compose("train", [*FAST, f"model.net.fusion={fusion}", "trainer.fast_dev_run=true", "data.batch_size=8"],
                      tmp_path)
    metrics, _ = train(cfg)
    assert torch.isfinite(metrics["train/loss"]) and {f"test/acc_{t}" for t in QUESTION_TYPES} <= set(metrics)


def test_transformer_text_encoder_runs(tmp_path: Path) -> None:
    encoder = ["model.net.text_encoder._target_=src.models.nets.text.TransformerTextEncoder",
               "~model.net.text_encoder.cell", "+model.net.text_encoder.num_layers=1"]
    metrics, _ = train(compose("train", [*FAST, *encoder, "trainer.fast_dev_run=true", "data.batch_size=8"], tmp_path))
    assert torch.isfinite(metrics["train/loss"])


def test_pretrained_hf_encoder_and_tokenizer_from_local_folder(tmp_path: Path, package_data: VQADataModule) -> None:
    """What online users do with bert-base-uncased, offline: a tiny BERT and its tokenizer saved
    to a folder, named as data.tokenizer and the text encoder."""
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = easy_vqa_root("package", "")
    tokenizer = word_level_tokenizer(load_easy_vqa(root, "train").questions)
    hf_dir = tmp_path / "tiny-bert"
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(hf_dir)
    BertModel(BertConfig(vocab_size=29, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(hf_dir)
    overrides = [f"data.tokenizer={hf_dir}", "~model.net.text_encoder",
                 f"+model.net.text_encoder={{_target_: src.models.nets.text.HFTextEncoder, name_or_path: '{hf_dir}'}}",
                 "trainer.fast_dev_run=true", "data.batch_size=8"]
    metrics, objects = train(compose("train", [*FAST, *overrides], tmp_path))
    assert torch.isfinite(metrics["train/loss"]) and objects["model"].net.text_encoder.dim == 32


def test_small_subset_is_fitted_completely(package_data: VQADataModule) -> None:
    """Learning test: the model config's net answers all ~80 questions about 8 training images
    (judged in eval mode, BatchNorm running statistics included) within 300 steps on them."""
    torch.manual_seed(0)
    loader = package_data.train_dataloader()
    subset = next(iter(torch.utils.data.DataLoader(package_data.data_train, batch_size=8, collate_fn=loader.collate_fn)))
    cfg = OmegaConf.load(CONFIG_DIR / "model" / "fusion.yaml").net
    cfg.num_answers, cfg.image_size, cfg.image_encoder.in_channels, cfg.text_encoder.vocab_size = 13, 64, 3, 29
    net = instantiate(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    answer = lambda: net(subset["image"], subset["question"], subset["image_index"])  # noqa: E731
    for step in range(300):
        net.train()
        loss = F.cross_entropy(answer(), subset["answer"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 9:
            net.eval()
            with torch.no_grad():
                wrong = int((answer().argmax(1) != subset["answer"]).sum())
            if wrong == 0:
                break
    assert wrong == 0, f"{wrong} of {len(subset['answer'])} questions still wrong after 300 steps"


def test_checkpoint_and_test_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short run: checkpoints load with weights_only=True; the test errors are in a JSONL
    file, a PNG grid and a W&B table (offline run)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = compose("train", [*FAST, "logger=wandb", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                                "trainer.limit_val_batches=2", "trainer.limit_test_batches=4", "data.batch_size=16"],
                      tmp_path)
    metrics, objects = train(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["archlab"]["config"]["model"]["_target_"] == "src.models.vqa.VQAModule" and "state_dict" in ckpt
    rows = [json.loads(line) for line in (tmp_path / "test_errors.jsonl").read_text().splitlines()]
    assert rows and {"question", "pred", "answer"} <= set(rows[0]) and rows[0]["pred"] != rows[0]["answer"]
    assert (tmp_path / "test_errors.png").stat().st_size > 1000
    tables = list(tmp_path.rglob("test/errors_*.table.json"))
    assert tables and json.loads(tables[0].read_text())["columns"] == ["image", "question", "prediction", "answer"]


def test_fusion_on_mnist_is_a_clear_mismatch(tmp_path: Path) -> None:
    cfg = compose("train", ["model=fusion", "data=mnist"], tmp_path)
    with pytest.raises(ConfigError, match="model=fusion .* cannot run on data=mnist.*Data for model=fusion: easy_vqa"):
        check_compatibility(cfg, {"model": "fusion", "data": "mnist"})


def test_test_batch_is_the_start_of_the_test_loader(package_data: VQADataModule) -> None:
    """compress.py's calibration and timing inputs: the first test images with their questions."""
    batch, reference = package_data.test_batch(3), next(iter(package_data.test_dataloader()))
    assert int(batch["image_index"].max()) == 2 and torch.equal(batch["image"], reference["image"][:3])
    n = len(batch["answer"])
    assert torch.equal(batch["answer"], reference["answer"][:n]) and torch.equal(batch["question_index"], reference["question_index"][:n])

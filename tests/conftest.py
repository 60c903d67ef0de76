"""Shared fixtures: GoEmotions-format files, a tiny BERT built from config and a tokenizer made here.

The fixture texts carry a learnable signal (each label has its own cue words) so a few epochs of a tiny model
move validation F1, and the quirks of the release format (quotes, emoji, [NAME] masks, multi-label ids).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainables.device import SIMULATED_GPUS_ENV

REPO = Path(__file__).resolve().parent.parent
# Tests declare logical GPUs on CPU machines (`ray start --num-gpus 2`): trials given one train on CPU instead of
# failing for want of CUDA. Every Ray node a test starts inherits this from the test process.
os.environ[SIMULATED_GPUS_ENV] = "1"
GOEMOTIONS_LABELS = ["admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
                     "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
                     "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
                     "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral"]
FILLER = ["the", "a", "this", "is", "so", "really", "[NAME]", "today", "\"quoted\"", "😂", "lol", "it"]


def goemotions_rows(n: int, seed: int) -> list[tuple[str, list[int], str]]:
    """Rows of (text, label ids, comment id); labels 0..5 and 27 carry cue words, a fifth are multi-label."""
    rng = np.random.default_rng(seed)
    frequent = [0, 1, 2, 3, 4, 5, 27]
    rows = []
    for i in range(n):
        labels = sorted(set(rng.choice(frequent, size=1 if rng.random() < 0.8 else 2, replace=False).tolist()))
        words = [f"cue{label}" for label in labels] + list(rng.choice(FILLER, size=rng.integers(2, 8)))
        rng.shuffle(words)
        rows.append((" ".join(words), labels, f"e{seed}x{i}"))
    return rows


def write_goemotions(directory: Path, sizes=(96, 48, 48)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "labels.txt").write_text("\n".join(GOEMOTIONS_LABELS))
    for seed, (filename, size) in enumerate(zip(("train.tsv", "dev.tsv", "test.tsv"), sizes)):
        lines = [f"{text}\t{','.join(map(str, labels))}\t{cid}" for text, labels, cid in goemotions_rows(size, seed)]
        (directory / filename).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def build_tiny_bert(directory: Path, texts: list[str]) -> Path:
    """A 2-layer, 64-wide BERT with a WordLevel tokenizer over the fixture vocabulary, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for text in texts for w in text.lower().replace("[name]", "name").split()})
    vocab = {token: i for i, token in enumerate(specials + words)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", do_lower_case=True)
    torch.manual_seed(0)
    # 64 wide, not less: on CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights for inference in blocks of
    # 64 input features, and a narrower layer fails there (the QLoRA encoder tests load this model in 4-bit).
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128, pad_token_id=0)
    BertForSequenceClassification(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def goemotions_dir(tmp_path_factory) -> Path:
    return write_goemotions(tmp_path_factory.mktemp("goemotions"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, goemotions_dir) -> Path:
    texts = [line.split("\t")[0] for f in ("train.tsv", "dev.tsv", "test.tsv")
             for line in (goemotions_dir / f).read_text().splitlines()]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), texts)


def run_sweep(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a sweep file as a user would, on a fresh local Ray cluster, without the dashboard."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_DEDUP_LOGS": "0", "TUNE_RESULT_BUFFER_LENGTH": "1"}
    return subprocess.run([sys.executable, str(REPO / "sweeps" / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def load_studies(sweep_dir: Path) -> dict:
    """The sweep's Optuna studies, by name, from its journal file."""
    import optuna

    from sweeps.tuning import JOURNAL, open_journal

    storage = open_journal(sweep_dir / JOURNAL)
    return {name: optuna.load_study(study_name=name, storage=storage) for name in optuna.get_all_study_names(storage)}

"""Tiny models built from config and saved like hub models, so the real loading and training code runs on them in
seconds: a 2-layer BERT with a word-level tokenizer over the fixture vocabulary, a 2-layer Qwen3 (pad, eos and a
small chat template) that bitsandbytes loads in 4-bit on CPU; and local Hugging Face caches in the hub's layout."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from tests.helpers.data import GOEMOTIONS_LABELS
from trainables.labels_text import TEMPLATES


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


SEMEVAL_LABELS = ["anger", "anticipation", "disgust", "fear", "joy", "love", "optimism", "pessimism", "sadness",
                  "surprise", "trust"]
SPECIALS = ["<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>"]


CHAT_TEMPLATE = ("{% for m in messages %}<|user|> {{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %} <|assistant|>{% endif %}")


def build_tiny_qwen(directory: Path, texts: list[str], pad: bool = True) -> Path:
    """A 2-layer, 64-wide Qwen3 and a lower-casing word-level tokenizer, saved like a hub model."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    corpus = texts + GOEMOTIONS_LABELS + SEMEVAL_LABELS + list(TEMPLATES.values()) + ["none"]
    words = sorted({word.lower() for text in corpus for word, _ in pre.pre_tokenize_str(text)} - set(SPECIALS))
    vocab = {token: i for i, token in enumerate(SPECIALS + words)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>",
                                   additional_special_tokens=["<|user|>", "<|assistant|>"],
                                   **({"pad_token": "<pad>", "eos_token": "<eos>"} if pad else {}))
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=False)
    Qwen3ForCausalLM(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def fixture_texts(data_dir: Path) -> list[str]:
    """The texts of a GoEmotions-format dir's three files: the vocabulary a tiny model is built over."""
    return [line.split("\t")[0] for f in ("train.tsv", "dev.tsv", "test.tsv")
            for line in (data_dir / f).read_text().splitlines()]


def build_hub_cache(cache: Path, repo_id: str, snapshots: dict[str, Path], main: str) -> None:
    """A local Hugging Face cache holding `repo_id` at several commits, laid out as huggingface_hub writes it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for commit, source in snapshots.items():
        shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(main)


def put_in_hub_cache(hub_cache: Path, repo_type: str, repo_id: str, commit: str, branch: str = "main",
                     files: Path | None = None) -> None:
    """huggingface_hub's cache layout: <type>s--org--name/snapshots/<commit>/<files>, refs/<branch> = commit."""
    folder = hub_cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (folder / "refs" / branch).parent.mkdir(parents=True, exist_ok=True)
    (folder / "refs" / branch).write_text(commit)
    if files is not None:
        shutil.copytree(files, folder / "snapshots" / commit)

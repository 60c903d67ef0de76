"""The encoder trial's optimizer, and how it trains the word-embedding matrix (`word_embedding_updates`).

Why: in a small encoder the word-embedding matrix is half the weights (all-MiniLM-L6-v2: 11.7M of 22.7M, a 30,522 x
384 matrix), yet a batch of 32 short texts looks up a few hundred of its rows. Trained densely, every step still
zero-fills a 47 MB gradient for all 30,522 rows, takes its norm for clipping and runs AdamW over every row (reading
and writing the weights and both moments), all of it for rows that did not occur: sparse updates make a bf16 step of
MiniLM at batch 32 about 7% faster on the 2-core VM, as fast as freezing the matrix (docs/benchmarks.md, "Training
speed"). Three ways to train it:

- "dense": plain fused AdamW over every weight, the embeddings included (the HF Trainer's way).
- "sparse": the embedding lookup returns a sparse gradient (the touched rows only) and those rows alone take an
  AdamW step ("lazy" Adam, as TensorFlow's LazyAdam and torch's SparseAdam): their moments are updated and their
  decoupled weight decay applied at that step; rows a batch did not touch keep their weights and moments as they
  are, where dense AdamW would keep moving them on their decaying momentum and decay them. Gradient clipping is
  exact (the norm of the touched rows' summed gradients is the dense gradient's norm), the learning-rate schedule
  applies as to every group, and the optimizer's state has AdamW's layout (step, exp_avg, exp_avg_sq per weight),
  so a checkpoint's optimizer.state_dict() resumes as any AdamW one does.
- "frozen": the matrix does not train at all (the pretrained rows stay).

One optimizer object holds all of it, rather than torch.optim.SparseAdam beside AdamW: SparseAdam has no weight
decay, and two optimizers would need two schedulers, two state dicts in a checkpoint and two steps for the
GradScaler.
"""
from __future__ import annotations

from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR

WORD_EMBEDDING_UPDATES = ("dense", "sparse", "frozen")


class SparseRowsAdamW(torch.optim.AdamW):
    """AdamW (fused) that also takes sparse gradients: a weight whose gradient is a sparse COO tensor updates only
    the rows it holds, with AdamW's formula and state (the module docstring says what differs from dense AdamW).
    Dense gradients take the fused AdamW step unchanged."""

    def __init__(self, param_groups: list[dict]) -> None:
        super().__init__(param_groups, fused=True)
        # A GradScaler (fp16 on older GPUs) then unscales the gradients itself and skips the whole step when one is
        # not finite, instead of handing the fused kernel an inf flag that the sparse rows' update would not read.
        self._step_supports_amp_scaling = False

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sparse = [(group, param) for group in self.param_groups for param in group["params"]
                  if param.grad is not None and param.grad.is_sparse]
        # AdamW refuses sparse gradients: it steps the dense ones while the sparse ones are set aside
        sparse_grads = [param.grad for _, param in sparse]
        for _, param in sparse:
            param.grad = None
        try:
            super().step()
        finally:
            for (_, param), grad in zip(sparse, sparse_grads):
                param.grad = grad
        for group, param in sparse:
            self._update_rows(group, param, param.grad.coalesce())
        return loss

    def _update_rows(self, group: dict, param: torch.Tensor, grad: torch.Tensor) -> None:
        """AdamW's step for the rows of `param` that the coalesced sparse `grad` holds; the state is created as fused
        AdamW creates it (its step count a float32 tensor on the weight's device), so the two are interchangeable."""
        state = self.state[param]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        rows, values = grad.indices()[0], grad.values()
        beta1, beta2 = group["betas"]
        lr, step = group["lr"], state["step"]
        step += 1
        exp_avg = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        # bias corrections from the step count tensor, so a GPU weight's update needs no sync with the host
        denominator = (exp_avg_sq.sqrt() / (1 - beta2 ** step).sqrt()).add_(group["eps"])
        weights = param.index_select(0, rows).mul_(1 - lr * group["weight_decay"])
        weights -= exp_avg / denominator * (lr / (1 - beta1 ** step))
        param.index_copy_(0, rows, weights)


def build_optimizer(model: torch.nn.Module, config: dict, qlora: bool) -> SparseRowsAdamW:
    """The trial's optimizer: the body at `lr` (QLoRA: its adapters at `lora_lr`), biases and LayerNorm weights
    without weight decay, the head (everything outside the pretrained body) at `head_lr`. Sets how the word
    embeddings train (`config["word_embedding_updates"]`): "frozen" stops their gradient, "sparse" switches their
    lookup to sparse gradients and gives them a group of their own (the body's learning rate and decay). A QLoRA
    body, embeddings included, is frozen already.

    Fused: one kernel over every tensor. torch's default AdamW on CPU loops over the ~100 tensors in Python, at about
    4x the cost (MiniLM, 1 thread: 121 against 26 ms a step, about a third of a training step); the HF Trainer uses
    the fused kernel by default since torch 2.8."""
    updates = config["word_embedding_updates"]
    if updates not in WORD_EMBEDDING_UPDATES:
        raise ValueError(f"word_embedding_updates: {updates!r} is not one of {', '.join(WORD_EMBEDDING_UPDATES)}")
    embedding = model.get_input_embeddings()
    word_embeddings = embedding.weight if embedding.weight.requires_grad and updates != "dense" else None
    if word_embeddings is not None and updates == "frozen":
        word_embeddings.requires_grad_(False)
    elif word_embeddings is not None:  # sparse
        if not isinstance(embedding, torch.nn.Embedding):
            raise ValueError(f"word_embedding_updates 'sparse' needs an nn.Embedding, not {type(embedding).__name__}")
        embedding.sparse = True
    body_ids = {id(p) for p in model.base_model.parameters()} if not qlora else set()
    groups = {"body": [], "no_decay": [], "head": [], "word_embeddings": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param is word_embeddings:
            groups["word_embeddings"].append(param)
        elif "modules_to_save" in name or (not qlora and id(param) not in body_ids):
            groups["head"].append(param)
        elif param.ndim < 2:  # biases and LayerNorm weights are not decayed
            groups["no_decay"].append(param)
        else:
            groups["body"].append(param)
    body_lr = config["lora_lr"] if qlora else config["lr"]
    lr_and_decay = {"body": (body_lr, config["weight_decay"]), "no_decay": (body_lr, 0.0),
                    "head": (config["head_lr"], config["weight_decay"]),
                    "word_embeddings": (body_lr, config["weight_decay"])}
    # the groups in the order the optimizer always had (body, no_decay, head), so a "dense" checkpoint's optimizer
    # state loads as before; the sparse word embeddings' group only where it has a weight
    return SparseRowsAdamW([{"params": params, "lr": lr_and_decay[name][0], "weight_decay": lr_and_decay[name][1]}
                            for name, params in groups.items() if params or name != "word_embeddings"])


def clip_grad_norm_(optimizer: torch.optim.Optimizer, max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ over the optimizer's weights, sparse gradients included (coalesced in place
    first: a sparse embedding gradient lists a row once per token, and only the summed rows have the dense
    gradient's norm). Returns the total norm before clipping."""
    grads = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None and param.grad.is_sparse:
                param.grad = param.grad.coalesce()
                grads.append(param.grad._values())  # an alias: scaling it scales the gradient
            elif param.grad is not None:
                grads.append(param.grad)
    total_norm = torch.nn.utils.get_total_norm(grads)
    torch._foreach_mul_(grads, (max_norm / (total_norm + 1e-6)).clamp(max=1.0))
    return total_norm


def linear_warmup_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """transformers' get_linear_schedule_with_warmup, the same LambdaLR step for step and the same state dict, so
    a checkpoint resumes across the two: the learning rate rises from 0 over `warmup_steps`, then falls linearly
    to 0 at `total_steps`. Why not import it: transformers.optimization imports trainer_utils, which imports peft
    (and bitsandbytes, and torch's inductor), 3.4 s on the 2-core VM that every trial process would pay at its start,
    the confirmation seeds' included, for an encoder trial that never uses peft."""
    return LambdaLR(optimizer, partial(linear_warmup_factor, warmup_steps=warmup_steps, total_steps=total_steps))


def linear_warmup_factor(step: int, *, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))

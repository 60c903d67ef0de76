"""How the encoder trial's optimizer trains the word embeddings (trainables/optimizers.py), on the tiny BERT: sparse
updates give the rows a batch touches exactly dense AdamW's step (clipping included) and leave the other rows alone;
their optimizer state resumes from a state dict like AdamW's; the schedule reaches their group and is transformers'
linear warmup step for step; "dense" keeps the optimizer's former groups (a checkpoint written before still
resumes) and "frozen" trains no embedding."""
import copy
import io

import pytest
import torch
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from trainables.encoder import DEFAULTS
from trainables.optimizers import build_optimizer, clip_grad_norm_, linear_warmup_schedule

CONFIG = {**DEFAULTS, "lr": 1e-2, "head_lr": 1e-2, "weight_decay": 0.1}
# token ids repeat within and across rows ([CLS] = 2 and [SEP] = 3 in every row), as a batch's do; 0 pads
BATCH = {"input_ids": torch.tensor([[2, 7, 9, 7, 3], [2, 9, 11, 3, 0]]),
         "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])}
TOUCHED = [2, 3, 7, 9, 11]


@pytest.fixture
def model(tiny_bert):
    # eval mode: no dropout, so the dense and sparse copies see the same forward pass
    return AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()


def train_step(model, optimizer, max_norm=1e-3):
    """One step as the trial takes it, with a clip that binds (max_norm well below the gradient's norm)."""
    optimizer.zero_grad(set_to_none=True)
    model(**BATCH).logits.pow(2).sum().backward()
    norm = clip_grad_norm_(optimizer, max_norm)
    optimizer.step()
    return norm


def word_embeddings(model):
    return model.get_input_embeddings().weight.detach()


def test_sparse_updates_step_the_touched_rows_as_dense_adamw_and_leave_the_rest(model):
    start = word_embeddings(model).clone()
    dense, sparse = model, copy.deepcopy(model)
    dense_optimizer = build_optimizer(dense, {**CONFIG, "word_embedding_updates": "dense"}, qlora=False)
    sparse_optimizer = build_optimizer(sparse, {**CONFIG, "word_embedding_updates": "sparse"}, qlora=False)
    for _ in range(3):  # the same rows every step: the lazy and the dense moments then agree on them
        dense_norm = train_step(dense, dense_optimizer)
        sparse_norm = train_step(sparse, sparse_optimizer)
        torch.testing.assert_close(sparse_norm, dense_norm)  # coalesced: the repeated ids' rows summed
    assert sparse.get_input_embeddings().weight.grad.is_sparse
    torch.testing.assert_close(word_embeddings(sparse)[TOUCHED], word_embeddings(dense)[TOUCHED])
    untouched = torch.ones(len(start), dtype=torch.bool)
    untouched[TOUCHED] = False
    assert torch.equal(word_embeddings(sparse)[untouched], start[untouched])  # not even decayed
    torch.testing.assert_close(word_embeddings(dense)[untouched], start[untouched] * (1 - 1e-2 * 0.1) ** 3)
    others = [(name, weight) for name, weight in sparse.named_parameters() if "word_embeddings" not in name]
    for name, weight in others:
        torch.testing.assert_close(weight, dense.get_parameter(name), msg=name)


def test_sparse_optimizer_state_resumes_from_its_state_dict(model):
    """As a resumed trial does: a fresh model and optimizer from the checkpoint's weights and optimizer state dict
    continue exactly as the uninterrupted run."""
    config = {**CONFIG, "word_embedding_updates": "sparse"}
    optimizer = build_optimizer(model, config, qlora=False)
    train_step(model, optimizer)
    saved = io.BytesIO()
    torch.save(optimizer.state_dict(), saved)
    resumed = copy.deepcopy(model)
    resumed_optimizer = build_optimizer(resumed, config, qlora=False)
    saved.seek(0)
    resumed_optimizer.load_state_dict(torch.load(saved))
    embedding_state = optimizer.state[model.get_input_embeddings().weight]
    assert set(embedding_state) == {"step", "exp_avg", "exp_avg_sq"}  # AdamW's layout
    train_step(model, optimizer)
    train_step(resumed, resumed_optimizer)
    for name, weight in resumed.named_parameters():
        torch.testing.assert_close(weight, model.get_parameter(name), msg=name)


def test_the_schedule_sets_the_sparse_groups_rate_too(model):
    optimizer = build_optimizer(model, {**CONFIG, "word_embedding_updates": "sparse"}, qlora=False)
    scheduler = linear_warmup_schedule(optimizer, warmup_steps=4, total_steps=10)
    train_step(model, optimizer)
    scheduler.step()
    embedding = model.get_input_embeddings().weight
    [embedding_group] = [group for group in optimizer.param_groups if any(p is embedding for p in group["params"])]
    assert embedding_group["lr"] == optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 / 4)  # warmup: step 1 of 4
    assert embedding_group["weight_decay"] == CONFIG["weight_decay"]


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
@pytest.mark.parametrize("warmup_steps, total_steps", [(4, 10), (0, 7), (3, 3), (10, 4)])
def test_the_schedule_is_transformers_linear_warmup_and_resumes_from_its_state(model, warmup_steps, total_steps):
    """The same learning rate at every step, past the end too; a state dict either one saved loads into the other
    (a checkpoint written by a trial that used transformers' schedule resumes)."""
    ours = build_optimizer(model, CONFIG, qlora=False)
    theirs = build_optimizer(copy.deepcopy(model), CONFIG, qlora=False)
    schedules = (linear_warmup_schedule(ours, warmup_steps, total_steps),
                 get_linear_schedule_with_warmup(theirs, warmup_steps, total_steps))
    for _ in range(total_steps + 2):
        assert schedules[0].get_last_lr() == schedules[1].get_last_lr()
        for schedule in schedules:
            schedule.step()
    resumed = linear_warmup_schedule(build_optimizer(copy.deepcopy(model), CONFIG, qlora=False), warmup_steps,
                                     total_steps)
    resumed.load_state_dict(schedules[1].state_dict())
    resumed.step(), schedules[1].step()
    assert resumed.get_last_lr() == schedules[1].get_last_lr() and resumed.last_epoch == schedules[1].last_epoch


def test_dense_keeps_the_former_groups_and_frozen_trains_no_embedding(model):
    """"dense" builds the three groups the trial always had (body, no_decay, head), the embeddings in the body's,
    so the optimizer state of a checkpoint written before loads; "frozen" leaves the matrix out."""
    frozen = copy.deepcopy(model)
    dense = build_optimizer(model, {**CONFIG, "word_embedding_updates": "dense"}, qlora=False)
    dense_groups = dense.param_groups
    assert len(dense_groups) == 3 and [g["weight_decay"] for g in dense_groups] == [0.1, 0.0, 0.1]
    former = torch.optim.AdamW([{"params": g["params"], "lr": g["lr"], "weight_decay": g["weight_decay"]}
                                for g in dense_groups], fused=True)
    train_step(model, former)
    dense.load_state_dict(former.state_dict())  # what the trial's optimizer was before: its checkpoints resume
    assert any(weight is model.get_input_embeddings().weight for weight in dense_groups[0]["params"])
    assert not model.get_input_embeddings().sparse
    frozen_groups = build_optimizer(frozen, {**CONFIG, "word_embedding_updates": "frozen"}, qlora=False).param_groups
    assert not frozen.get_input_embeddings().weight.requires_grad
    assert sum(len(g["params"]) for g in frozen_groups) == sum(len(g["params"]) for g in dense_groups) - 1


def test_an_unknown_setting_is_refused(model):
    with pytest.raises(ValueError, match="word_embedding_updates"):
        build_optimizer(model, {**CONFIG, "word_embedding_updates": "lazy"}, qlora=False)

"""What a trial trains on: length-grouped batches (the HF Trainer's group_by_length order) cover every training row
exactly once per epoch, are reproducible from the seed (a resumed trial repeats its epoch's batches) and pad far
less than random batches; token ids shared by the sweep equal the trial's own."""
import numpy as np
from optuna.distributions import FloatDistribution, IntDistribution
from transformers import AutoTokenizer

from sweeps.run import shared_tokenization
from sweeps.studies import Study
from trainables.data import load_dataset
from trainables.tweets import preprocess
from trainables.encoder import length_grouped_batches, token_rows, tokenization_key


def test_every_row_once_per_epoch_and_the_same_batches_from_the_same_seed():
    lengths = np.random.default_rng(0).integers(3, 64, size=1003)
    batches = length_grouped_batches(lengths, 32, seed=7)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1003))
    assert all(len(batch) == 32 for batch in batches[:-1]) and 0 < len(batches[-1]) <= 32
    again = length_grouped_batches(lengths, 32, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other_epoch = length_grouped_batches(lengths, 32, seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other_epoch))


def test_padding_is_close_to_the_true_lengths():
    lengths = np.random.default_rng(1).integers(3, 64, size=4000)
    grouped = np.mean([lengths[b].max() for b in length_grouped_batches(lengths, 32, seed=0)])
    order = np.random.default_rng(0).permutation(4000)
    random = np.mean([lengths[order[i:i + 32]].max() for i in range(0, 4000, 32)])
    assert grouped < 1.2 * lengths.mean() < random


def test_tokens_shared_through_the_object_store_equal_a_trials_own(goemotions_dir, tiny_bert):
    """The sweep tokenizes each split once per tokenizer and text form; a trial reading those ids sees exactly what
    tokenizing in the trial gives, for every choice of a searched preprocessing."""
    data = load_dataset("goemotions", goemotions_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    searched = Study(name="tiny", config={"model_source": str(tiny_bert), "max_length": 12},
                     space={"preprocess": ["none", "tweet"], "lr": FloatDistribution(1e-5, 1e-3)},
                     num_samples=2, max_concurrent=1, cpus=1, gpus=0)
    shared = shared_tokenization([searched], data)
    assert len(shared) == 2
    for mode in ("none", "tweet"):
        tokens = shared[tokenization_key({**searched.config, "preprocess": mode})]
        assert tokens["pad_id"] == tokenizer.pad_token_id
        for name, split in (("train", data.train), ("validation", data.validation), ("test", data.test)):
            rows, lengths = token_rows(tokens[name])
            expected = tokenizer(preprocess(split.texts, mode), truncation=True, max_length=12)["input_ids"]
            assert [row.tolist() for row in rows] == expected
            assert lengths.tolist() == [len(row) for row in expected]


def test_a_length_searched_over_a_range_is_tokenized_in_the_trials(goemotions_dir, tiny_bert):
    ranged = Study(name="tiny", config={"model_source": str(tiny_bert)},
                   space={"max_length": IntDistribution(8, 64)}, num_samples=2, max_concurrent=1, cpus=1, gpus=0)
    assert shared_tokenization([ranged], load_dataset("goemotions", goemotions_dir)) == {}

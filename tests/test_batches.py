"""Length-grouped batches (the HF Trainer's group_by_length order): every training row exactly once per epoch,
reproducible from the seed (a resumed trial repeats its epoch's batches), and far less padding than random
batches."""
import numpy as np

from trainables.encoder import length_grouped_batches


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

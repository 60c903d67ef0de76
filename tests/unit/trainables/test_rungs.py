"""Where rungs inside an epoch end, and the validation subset they are scored on (trainables/rungs.py)."""
import numpy as np
import pytest

from trainables.rungs import RUNG_SUBSET_MIN_ROWS, rung_ends, rung_subset, rung_subset_rows


@pytest.mark.parametrize("batches, rungs", [(4, 4), (5, 4), (250, 4), (7, 2), (3, 3), (10, 1)])
def test_every_epoch_reports_exactly_rungs_per_epoch_times(batches, rungs):
    ends = rung_ends(batches, rungs)
    assert len(ends) == rungs - 1 and ends == sorted(set(ends))  # plus the epoch's own end
    assert all(0 < end < batches for end in ends)
    if ends:  # evenly spaced: no gap more than one batch longer than another
        gaps = np.diff([0, *ends, batches])
        assert gaps.max() - gaps.min() <= 1


def test_an_epoch_with_fewer_batches_than_rungs_is_refused():
    with pytest.raises(ValueError, match="rungs_per_epoch 4: an epoch has only 3 batches"):
        rung_ends(3, 4)


def test_the_subset_is_a_share_of_a_rungs_training_rows_within_bounds():
    assert rung_subset_rows(5426, 16000, 4) == 1000  # GoEmotions at the cpu budget: a quarter of 4,000 rows
    assert rung_subset_rows(886, 6838, 4) == RUNG_SUBSET_MIN_ROWS  # SemEval E-c: never fewer than the floor
    assert rung_subset_rows(300, 16000, 4) == 300  # never more than the split


def test_the_subset_keeps_rare_labels_in_their_share_and_is_the_same_every_time():
    rng = np.random.default_rng(3)
    labels = (rng.random((4000, 6)) < [0.4, 0.2, 0.1, 0.05, 0.02, 0.01]).astype(int)
    subset = rung_subset(labels, 1000)
    assert len(subset) == 1000 and len(set(subset)) == 1000 and list(subset) == sorted(subset)
    np.testing.assert_array_equal(subset, rung_subset(labels.copy(), 1000))
    # each row's rarest label is drawn in proportion: the rarest label's rows exactly a quarter, within rounding
    rarest = labels[:, 5] == 1
    assert abs(rarest[subset].sum() - rarest.sum() / 4) <= 1
    single = rng.integers(0, 6, 4000)
    counts = np.bincount(single[rung_subset(single, 400)], minlength=6)
    np.testing.assert_allclose(counts, np.bincount(single, minlength=6) / 10, atol=1)
    np.testing.assert_array_equal(rung_subset(single, 5000), np.arange(4000))  # the whole split when it is small

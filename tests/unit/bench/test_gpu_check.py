"""bench/gpu_check.py: its no-CUDA path and its flags through its main() (in this process, as `python -m
bench.gpu_check` runs it), and its checks' logic on CPU (a tiny BERT built from config; the GPU Ray trials as
logical GPUs through the simulation switch)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.gpu_check import (CUES, Check, encoder_check_name, encoder_precision_check, guarded, main, packing_verdict,
                             synthetic_data, table, write_goemotions_release)
from tests.helpers.models import build_tiny_bert
from trainables.data import load_goemotions_local


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    data = synthetic_data(240, 40)
    texts = data.train.texts + data.validation.texts + data.test.texts
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), texts), data


def run_gpu_check(capsys, *argv: str):
    """bench.gpu_check's main() in this process, as `python -m bench.gpu_check ARGV` runs it: (exit code,
    stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_without_cuda_it_prints_one_line_and_exits_0(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as CUDA_VISIBLE_DEVICES="" would
    code, out, err = run_gpu_check(capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 1
    assert out.startswith("gpu_check: no CUDA device")


def test_a_bad_flag_is_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = run_gpu_check(capsys, "--steps", "0")
    assert code == 2
    assert err.strip().splitlines() == ["python -m bench.gpu_check: error: argument --steps: '0' must be > 0"]


def test_synthetic_data_is_multi_label_with_a_cue_word_per_label():
    data = synthetic_data(200, 50, seed=3)
    assert data.multi_label and data.train.labels.shape == (200, 6)
    assert set(data.train.labels.sum(axis=1)) == {1.0, 2.0}
    assert data.train.texts == synthetic_data(200, 50, seed=3).train.texts  # seeded
    for text, row in zip(data.train.texts, data.train.labels):
        words = set(text.split())
        assert [bool(words & set(CUES[name])) for name in data.label_names] == [bool(on) for on in row]


def test_the_round_trip_data_load_as_goemotions_with_each_cue_on_its_goemotions_label(tmp_path):
    """The round trip's sweep reads the synthetic rows through the GoEmotions release-file loader: every row comes
    back, with its cue labels as the GoEmotions labels of the same names and no other label set."""
    data = synthetic_data(40, 12)
    loaded = load_goemotions_local(write_goemotions_release(tmp_path / "goemotions", data))
    assert [len(loaded.train), len(loaded.validation), len(loaded.test)] == [40, 12, 12]
    cue_columns = [loaded.label_names.index(name) for name in CUES]  # joy, sadness, ... among the 28
    for written, read in ((data.train, loaded.train), (data.validation, loaded.validation), (data.test, loaded.test)):
        assert read.texts == written.texts
        assert np.array_equal(read.labels[:, cue_columns], written.labels)
        assert read.labels.sum() == written.labels.sum()


@pytest.fixture
def one_torch_thread():
    """Train the tiny model on one thread: on a busy 2-core machine two threads wait on each other, and 40 fp16
    steps (emulated on CPUs without native fp16) took 20 s instead of 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_encoder_precision_check_trains_under_autocast(tiny_encoder, one_torch_thread, dtype):
    model_dir, data = tiny_encoder
    check = guarded(encoder_check_name(dtype), encoder_precision_check, str(model_dir), None, data,
                    torch.device("cpu"), dtype, 40, dtype)  # as main() runs it
    assert check.result == "PASS", check.note
    assert check.name == f"encoder {'bf16' if dtype == torch.bfloat16 else 'fp16'}"
    assert check.peak_gpu_mb is None and check.examples_per_s > 0
    assert check.note.startswith("40 steps, loss ") and check.note.endswith("what trials use on this GPU")


@pytest.mark.parametrize("model, error", [
    ("no-such-model", "OSError: "),  # no such directory: not a hub id either
    ("empty-folder", "ValueError: "),  # no tokenizer in it: a message of several lines
])
def test_a_check_that_raises_is_a_fail_row_with_the_reason_in_one_line(tmp_path, model, error):
    """The check really runs and raises (no stand-in): its row says FAIL and why, and the table stays a table."""
    (tmp_path / "empty-folder").mkdir()
    check = guarded("encoder bf16", encoder_precision_check, str(tmp_path / model), None, synthetic_data(8, 4),
                    torch.device("cpu"), torch.bfloat16, 2, None)
    assert (check.name, check.result, check.peak_gpu_mb, check.examples_per_s) == ("encoder bf16", "FAIL", None, None)
    assert check.note.startswith(error) and len(check.note) > len(error) and "\n" not in check.note
    assert table([check]).splitlines()[2] == f"| encoder bf16 | FAIL | - | - | {check.note} |"


def trial(start: float, wall: float, gpu: str = "0", peak: float | None = None) -> dict:
    result = {"attempt_started_at": start, "trial_wall_s": wall, "gpu_ids": gpu, "train_examples_per_s": 10.0}
    return result if peak is None else {**result, "peak_gpu_mb": peak}


@pytest.mark.parametrize("trials, verdict, why", [
    ([trial(0, 30), trial(2, 30), trial(3, 30), trial(5, 30)], "PASS", "all running together for 25 s"),
    ([trial(0, 30, peak=5000), trial(1, 30, peak=5500)], "PASS", "each within its share"),
    ([trial(0, 10), trial(2, 10), trial(12, 10)], "FAIL", "not all at the same time"),
    ([trial(0, 30, gpu="0"), trial(1, 30, gpu="1")], "FAIL", "GPU ids ['0', '1'], not one GPU"),
    ([trial(0, 30, gpu=""), trial(1, 30, gpu="")], "FAIL", "not one GPU"),
    # a quarter of 24,000 MiB is 6,000, less a CUDA context (0.5 GB) 5,523: four such peaks and four contexts fill it
    ([trial(0, 30, peak=5000), trial(1, 30, peak=5600)], "FAIL",
     "a trial peaked at 5,600 MiB, over its 0.25 share less a CUDA context (5,523 MiB)"),
    ([trial(0, 30), {"error": "OutOfMemoryError: CUDA out of memory"}], "FAIL",
     "1 of 2 trials failed: OutOfMemoryError"),
])
def test_packing_verdict(trials, verdict, why):
    result, note = packing_verdict(trials, 0.25, gpu_mb=24_000)
    assert result == verdict and why in note


def test_table_has_a_row_per_check_and_dashes_for_what_was_not_measured():
    text = table([Check("encoder bf16", "PASS", 1234.4, 5678.9, "ok"), Check("decoder QLoRA", "SKIP", note="why")])
    assert text.splitlines()[2] == "| encoder bf16 | PASS | 1,234 | 5,679 | ok |"
    assert text.splitlines()[3] == "| decoder QLoRA | SKIP | - | - | why |"

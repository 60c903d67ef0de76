"""Bad flags and bad data end a sweep before Ray starts: one line naming the flag or file:line: field, exit
code 2, and no experiment directory. --dry-run prints the plan and writes nothing.

Each check calls the sweep file's `main` in this process (the `run_cli` fixture, tests/unit/conftest.py), as
`python sweeps/<file>.py` would with these flags (every check here ends before Ray starts); test_cli_fuzz.py
runs the command line through a real subprocess too, and checks that Ray never started."""
import json
import os

import pytest

from sweeps import goemotions_raw, goemotions_simplified
from tests.helpers.data import write_goemotions


def sweep_args(data_dir, model_dir, storage, *extra):
    return ["--data-dir", str(data_dir), "--models", str(model_dir), "--budget", "smoke",
            "--storage", str(storage), "--name", "exp", "--no-dashboard", *extra]


@pytest.mark.parametrize("extra, expected", [
    (["--lr=-1e-4"], "argument --lr: '-1e-4' must be > 0"),
    (["--search", "bayes"], "argument --search: invalid choice: 'bayes'"),
    (["--num-samples", "zero"], "argument --num-samples: 'zero' is not a number"),
    (["--budget", "huge"], "argument --budget: invalid choice: 'huge'"),
    (["--time-budget", "0s"], "argument --time-budget: '0s' must be a positive duration like 90s, 30m or 2h"),
    (["--time-budget=-5m"], "argument --time-budget: '-5m' must be a positive duration like 90s, 30m or 2h"),
    (["--time-budget", "soon"], "argument --time-budget: 'soon' is not a duration like 90s, 30m or 2h"),
    (["--max-concurrent", "0"], "argument --max-concurrent: '0' must be > 0"),
    (["--metric", "accuracy"], "argument --metric: invalid choice: 'accuracy'"),
    (["--confirm-seeds=-1"], "argument --confirm-seeds: '-1' must be >= 0"),
    (["--dropout", "1"], "argument --dropout: '1' must be below 1 (or 'checkpoint')"),
    (["--dropout", "some"], "argument --dropout: 'some' is not a number"),
    (["--word-embedding-updates", "lazy"], "argument --word-embedding-updates: invalid choice: 'lazy'"),
])
def test_bad_flags(run_cli, tmp_path, goemotions_dir, tiny_bert, extra, expected):
    result = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, tmp_path / "out", *extra))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"sweeps/goemotions_raw.py: error: {expected}")
    assert not (tmp_path / "out").exists()


def test_unknown_model_alias(run_cli, tmp_path, goemotions_dir):
    result = run_cli(goemotions_raw, "--data-dir", str(goemotions_dir), "--models", "gpt5",
                       "--storage", str(tmp_path / "out"), "--budget", "smoke")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --models gpt5: unknown model alias (known: distilbert, albert, mobilebert, minilm, roberta, "
        "distilroberta, bert, qwen3-0.6b, qwen2.5-7b, smollm2-135m; or pass a hub id org/name, or a local model "
        "directory)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("filename, line, content, expected", [
    ("train.tsv", 4, "two\tfields", "train.tsv:4: columns: expected 3 tab-separated fields"),
    ("dev.tsv", 2, "text\t31\tid", "dev.tsv:2: labels: '31' is not a label id in 0..27"),
    ("test.tsv", 6, "\t3\tid", "test.tsv:6: text: empty"),
])
def test_bad_data_files(run_cli, tmp_path, tiny_bert, filename, line, content, expected):
    data_dir = write_goemotions(tmp_path / "data")
    lines = (data_dir / filename).read_text().splitlines()
    lines[line - 1] = content
    (data_dir / filename).write_text("\n".join(lines) + "\n")
    result = run_cli(goemotions_raw, *sweep_args(data_dir, tiny_bert, tmp_path / "out"))
    assert result.returncode == 2
    [message] = result.stderr.strip().splitlines()
    assert message.startswith(f"error: {data_dir / filename}:") and expected in message
    assert not (tmp_path / "out").exists()


def test_missing_data_dir(run_cli, tmp_path, tiny_bert):
    result = run_cli(goemotions_raw, *sweep_args(tmp_path / "nope", tiny_bert, tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: data directory not found (--data-dir)"]
    assert not (tmp_path / "out").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(run_cli, tmp_path, goemotions_dir, tiny_bert):
    result = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, tmp_path / "out",
                                                     "--dry-run", "--search", "grid", "--allocate", "adaptive"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "goemotions (28 labels, multi-label)" in out
    assert "search grid" in out and "4 trials per model (adaptive allocation)" in out  # 2 lr x 2 pos_weight
    assert f"all studies in one Tune experiment, up to {os.cpu_count()} CPUs of trials at once" in out
    assert f"on a private Ray on this machine: 1 node, {os.cpu_count()} CPUs" in out
    assert f"optuna-dashboard {tmp_path / 'out' / 'exp' / 'optuna.journal'}" in out
    assert f"model {tiny_bert.name}:" in out
    assert f"{os.cpu_count()} CPU + 0 GPU per trial, up to 1 at once" in out
    assert f"results in {tmp_path / 'out' / 'exp'}" in out
    assert not (tmp_path / "out").exists()


def test_existing_experiment_needs_resume(run_cli, tmp_path, goemotions_dir, tiny_bert):
    (tmp_path / "out" / "exp").mkdir(parents=True)
    result = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, tmp_path / "out"))
    assert result.returncode == 2 and "already exists; pass --resume" in result.stderr


def write_saved_sweep(experiment, goemotions_dir, tiny_bert, **extra) -> None:
    """The sweep.json a sweep with these flags saves, without running it."""
    from sweeps.cli import build_parser
    from sweeps.goemotions_raw import EXPERIMENT

    args = build_parser(EXPERIMENT).parse_args(sweep_args(goemotions_dir, tiny_bert, experiment.parent))
    experiment.mkdir(parents=True)
    (experiment / "sweep.json").write_text(json.dumps({"args": vars(args), "experiment": EXPERIMENT.name,
                                                       "dataset": EXPERIMENT.dataset, **extra}))


@pytest.mark.parametrize("layout, journal, expected", [
    (None, None, "sweep.json: made by an older layout (one Tune experiment per model), which this version cannot "
                 "continue; start a new --name"),
    ("one-experiment", "not json\n", "optuna.journal:1: not an Optuna journal (each line is a JSON operation "
                                      "with an op_code)"),
])
def test_resume_checks_the_layout_and_the_journal(run_cli, tmp_path, goemotions_dir, tiny_bert, layout, journal,
                                                  expected):
    experiment = tmp_path / "out" / "exp"
    write_saved_sweep(experiment, goemotions_dir, tiny_bert, **({"layout": layout} if layout else {}))
    if journal:
        (experiment / "optuna.journal").write_text(journal)
    before = sorted(p.name for p in experiment.iterdir())
    result = run_cli(goemotions_raw, "--resume", "--name", "exp", "--storage", str(tmp_path / "out"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --resume: {experiment}/" if layout is None else f"error: {experiment}/")
    assert line.endswith(expected)
    assert sorted(p.name for p in experiment.iterdir()) == before  # nothing written


def test_jaccard_on_single_label_data_is_refused_before_ray(run_cli, tmp_path, goemotions_dir, tiny_bert):
    result = run_cli(goemotions_simplified, *sweep_args(goemotions_dir, tiny_bert, tmp_path / "out",
                                                        "--metric", "jaccard"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --metric jaccard: goemotions_single is single-label (one emotion per text), where Jaccard is "
        "accuracy; use macro_f1 or micro_f1"]
    assert not (tmp_path / "out").exists()


def test_device_gpu_on_a_private_ray_without_a_gpu_is_refused(run_cli, tmp_path, goemotions_dir, tiny_bert):
    """No GPU can ever join the one-node Ray a sweep starts here: its trials would wait forever."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, tmp_path / "out", "--device", "gpu"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: --device gpu: this machine has no GPU") and "--device cpu" in line
    assert not (tmp_path / "out").exists()


def test_rungs_inside_epochs_are_planned_and_refused_where_an_epoch_has_too_few_batches(run_cli, tmp_path,
                                                                                      goemotions_dir, tiny_bert):
    """Every epoch must report --rungs-per-epoch times: the smoke budget's 64 train rows at batch size up to 32 are
    two batches, room for 2 rungs and not for 3."""
    result = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, tmp_path / "out", "--dry-run",
                                                 "--rungs-per-epoch", "2"))
    assert result.returncode == 0, result.stderr
    assert "'rungs_per_epoch': 2" in result.stdout
    assert ("trials report every 1/2 epoch (ASHA may stop a trial at each): inside an epoch on a fixed 32-row "
            "validation subset, at its end on the whole split") in result.stdout

    result = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, tmp_path / "out", "--rungs-per-epoch", "3"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --rungs-per-epoch 3: an epoch of 64 train rows at batch size 32 has 2 batches, too few for 3 rungs"]
    assert not (tmp_path / "out").exists()


def test_the_cpu_budget_reports_four_times_an_epoch_where_the_training_split_has_room(run_cli, tmp_path,
                                                                                     goemotions_dir, tiny_bert):
    """The test files' 96 train rows: 6 batches of 16 hold the budget's 4 rungs, 3 batches of 32 only 3."""
    result = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, tmp_path / "out", "--dry-run",
                                                 "--budget", "cpu", "--batch-size", "16"))
    assert result.returncode == 0, result.stderr
    assert "'rungs_per_epoch': 4" in result.stdout and "trials report every 1/4 epoch" in result.stdout
    small = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, tmp_path / "out", "--dry-run",
                                                "--budget", "cpu"))
    assert small.returncode == 0 and "'rungs_per_epoch': 3" in small.stdout


def test_the_cpu_budget_trains_sparse_without_dropout_unless_the_flags_say_otherwise(run_cli, tmp_path,
                                                                                      goemotions_dir, tiny_bert):
    """The cpu budget's encoder trials update only the word-embedding rows a batch holds and drop nothing (measured
    faster at the same quality there); other budgets keep the trainable's defaults; the flags override either."""
    def fixed(*extra):
        result = run_cli(goemotions_raw, *sweep_args(goemotions_dir, tiny_bert, tmp_path / "out", "--dry-run", *extra))
        assert result.returncode == 0, result.stderr
        return result.stdout

    cpu = fixed("--budget", "cpu")
    assert "'word_embedding_updates': 'sparse', 'dropout': 0.0" in cpu
    smoke = fixed()
    assert "word_embedding_updates" not in smoke and "dropout" not in smoke
    chosen = fixed("--budget", "cpu", "--word-embedding-updates", "dense", "--dropout", "checkpoint")
    assert "'word_embedding_updates': 'dense', 'dropout': None" in chosen
    assert "'dropout': 0.05" in fixed("--dropout", "0.05")

"""The GoEmotions sweep end to end: a real local Ray cluster, OptunaSearch (TPE / grid), ASHA, checkpoints,
W&B offline runs, TensorBoard files and the best-per-model analysis, on a tiny BERT."""
import json
import re
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

from tests.helpers.sweeps import NOISE, load_studies, run_sweep


def trial_dirs(sweep_dir: Path, model: str) -> list[Path]:
    """The trials of one model's study: all trials share the sweep's one Tune experiment dir."""
    return sorted(p.parent for p in sweep_dir.glob(f"{model}_*/params.json"))


def test_tpe_sweep_with_asha_wandb_and_analysis(tmp_path, goemotions_dir, tiny_bert):
    result = run_sweep("goemotions_raw.py", "--data-dir", str(goemotions_dir), "--models", str(tiny_bert),
                       "--budget", "smoke", "--num-samples", "3", "--epochs", "2", "--train-rows", "96",
                       "--val-rows", "48", "--test-rows", "48", "--storage", str(tmp_path), "--name", "tpe",
                       "--wandb", "offline", "--no-dashboard", "--seed", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    for noise in NOISE:  # per-trial chatter that would bury a real warning (tests/unit/trainables/test_encoder_logs.py: those still show)
        assert noise not in result.stdout + result.stderr, noise
    sweep_dir = tmp_path / "tpe"
    model = tiny_bert.name
    lines = result.stdout.splitlines()
    # The console: the plan, a line per trial event, the table; none of Tune's status tables or trial-count line.
    assert lines[0].startswith("Sweep goemotions_raw:")
    assert "Trial status" not in result.stdout and "9223372036854775807" not in result.stdout + result.stderr
    assert "tensorboard --logdir" not in result.stdout
    for trial in trial_dirs(sweep_dir, model):
        events = [line for line in lines if line.startswith("[") and f"] {trial.name} " in line]
        assert " started: lr=" in events[0], events
        assert [" epoch " in line for line in events[1:-1]] == [True] * (len(events) - 2), events
        assert re.search(r" (finished|stopped early after epoch \d): best val macro_f1 \d\.\d{4} · \d/3 trials",
                         events[-1]), events
    header = next(line for line in lines if line.startswith("| model | params_m |"))
    assert lines.index(header) > max(i for i, line in enumerate(lines) if line.startswith("["))
    assert {"val_macro_f1", "test_macro_f1", "test_micro_f1", "best_epoch", "wall_s"} <= set(header.split(" | "))

    saved = json.loads((sweep_dir / "sweep.json").read_text())
    assert saved["seed"] == 1 and saved["versions"]["ray"].startswith("2.") and saved["search"] == "tpe"

    trials = trial_dirs(sweep_dir, model)
    assert len(trials) == 3
    best_val_per_trial = {}
    for trial in trials:
        config = json.loads((trial / "params.json").read_text())
        assert 2e-5 <= config["lr"] <= 3e-4 and 3e-4 <= config["head_lr"] <= 1e-2
        assert config["epochs"] == 2 and config["model_source"] == str(tiny_bert)
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        assert [r["training_iteration"] for r in rows] == list(range(1, len(rows) + 1))
        for row in rows:
            assert row["val_macro_f1_per_class"] >= row["val_macro_f1_global"] >= row["val_macro_f1_at_0.5"]
            assert row["threshold_strategy"] in {"0.5", "global", "per_class"}
        best_val_per_trial[trial] = max(r["val_macro_f1"] for r in rows)
        checkpoints = list(trial.glob("checkpoint_*"))
        assert 1 <= len(checkpoints) <= 2  # num_to_keep=1 keeps the best plus the latest
        for checkpoint in checkpoints:  # resuming needs the optimizer state; after the last epoch nothing resumes
            with np.load(checkpoint / "predictions.npz") as npz:
                last_epoch = int(npz["epoch"]) == config["epochs"]
            assert (checkpoint / "training_state.pt").exists() != last_epoch, checkpoint
        assert list(trial.glob("events.out.tfevents.*")), "TensorBoard files missing"

    rows = json.loads((sweep_dir / "best_trials.json").read_text())
    [row] = rows
    assert {"model", "val_macro_f1", "test_macro_f1", "test_micro_f1", "params_m", "config",
            "trial_dir"} <= set(row)
    best_trial = max(best_val_per_trial, key=best_val_per_trial.get)
    assert Path(row["trial_dir"]) == best_trial
    assert row["val_macro_f1"] == pytest.approx(best_val_per_trial[best_trial])
    assert 0.0 <= row["test_macro_f1"] <= 1.0 and row["params_m"] > 0
    assert (sweep_dir / "best_trials.md").read_text().count(model) >= 1
    assert (sweep_dir / "best_trials.csv").read_text().startswith("model,")

    # The saved predictions are the best epoch's, with thresholds chosen on validation.
    with np.load(next(best_trial.glob("checkpoint_*/predictions.npz"))) as npz:
        assert npz["val_probs"].shape == (48, 28) and npz["test_probs"].shape == (48, 28)
        assert npz["per_class_thresholds"].shape == (28,)

    runs = sorted((sweep_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 3, f"expected one W&B run per trial, found {runs}"
    assert all(list(run.glob("*.wandb")) for run in runs)


def test_grid_search_runs_every_point_once(tmp_path, goemotions_dir, tiny_bert):
    result = run_sweep("goemotions_raw.py", "--data-dir", str(goemotions_dir), "--models", str(tiny_bert),
                       "--budget", "smoke", "--search", "grid", "--scheduler", "none", "--storage", str(tmp_path),
                       "--name", "grid", "--no-dashboard", "--verbose")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trial status" in result.stdout  # --verbose: Tune's own tables as well as the trial lines
    assert " started: " in result.stdout
    points = [(json.loads((t / "params.json").read_text())["lr"], json.loads((t / "params.json").read_text())
               ["pos_weight"]) for t in trial_dirs(tmp_path / "grid", tiny_bert.name)]
    assert sorted(points) == sorted(product([5e-5, 1.5e-4], ["none", "inverse_frequency"]))
    assert not list((tmp_path / "grid").glob("*/error.txt"))  # the used-up grid ends no trial in error
    [study] = load_studies(tmp_path / "grid").values()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert study.metric_names == ["val macro_f1"]  # optuna-dashboard's name for the objective

"""Winners confirmed over seeds, end to end on a real local Ray cluster: after the search, each model's best
configuration trains again with --confirm-seeds further seeds in the same experiment; the table's mean and
standard deviation are the trials' own numbers; a seed-ensemble row exists; a resumed sweep does not confirm
twice."""
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.sweeps import run_sweep


def test_the_best_configuration_is_confirmed_with_further_seeds(tmp_path, goemotions_dir, tiny_bert):
    result = run_sweep("goemotions_raw.py", "--data-dir", str(goemotions_dir), "--models", str(tiny_bert),
                       "--budget", "smoke", "--num-samples", "2", "--epochs", "2", "--confirm-seeds", "2",
                       "--search", "random", "--storage", str(tmp_path), "--name", "confirm", "--no-dashboard")
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = tmp_path / "confirm"
    params = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/params.json")}
    confirmations = {name: c for name, c in params.items() if "confirm_of" in c}
    assert len(params) == 4 and len(confirmations) == 2
    [row] = json.loads((sweep_dir / "best_trials.json").read_text())
    best = params[Path(row["trial_dir"]).name]
    assert "confirm_of" not in best
    for config in confirmations.values():  # the best configuration, other seeds
        assert config["confirm_of"] == Path(row["trial_dir"]).name
        assert {k: v for k, v in config.items() if k not in ("seed", "confirm_of")} == \
            {k: v for k, v in best.items() if k != "seed"}
    assert sorted(c["seed"] for c in confirmations.values()) == [best["seed"] + 1, best["seed"] + 2]

    # mean and sd over the three seeds: each trial's best epoch, as its own results report it
    def best_val(trial: str) -> float:
        rows = [json.loads(line) for line in (sweep_dir / trial / "result.json").read_text().splitlines()]
        assert [r["training_iteration"] for r in rows] == [1, 2]  # confirmation trials are never stopped early
        return max(r["val_macro_f1"] for r in rows)

    values = [best_val(Path(row["trial_dir"]).name)] + [best_val(name) for name in confirmations]
    assert row["seeds"] == 3
    assert row["val_macro_f1_mean"] == pytest.approx(statistics.fmean(values), abs=1e-6)
    assert row["val_macro_f1_sd"] == pytest.approx(statistics.stdev(values), abs=1e-6)

    [ensemble] = [row for row in json.loads((sweep_dir / "ensembles.json").read_text()) if row["kind"] == "seeds"]
    assert ensemble["model"] == f"{tiny_bert.name} (3-seed ensemble)" and len(ensemble["members"]) == 3
    with np.load(ensemble["predictions"]) as npz:
        assert npz["val_probs"].shape == (32, 28) and npz["per_class_thresholds"].shape == (28,)
    table = (sweep_dir / "best_trials.md").read_text()
    assert "(3-seed ensemble)" in table and "val_macro_f1_mean" in table

    # resuming a finished sweep confirms nothing again
    again = run_sweep("goemotions_raw.py", "--resume", "--name", "confirm", "--storage", str(tmp_path),
                      "--no-dashboard")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(sweep_dir.glob("*/params.json"))) == 4

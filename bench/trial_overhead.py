"""Where each trial's wall time went, from a finished experiment's results: tokenizing, loading the model,
training, validation inference, writing checkpoints, and the rest (Ray starting the trial, Tune copying
checkpoints into storage and handling reports). Prints a table. Trials predict no test split (the sweep predicts it
afterwards for the checkpoints it reports, trainables/checkpoint_predictions.py), so it is no phase of theirs.

    python -m bench.trial_overhead results/<name>

Reads the phase times the encoder trainable reports with every epoch (tokenize_s and load_s once per attempt;
train_s, val_s and save_s per epoch) and its trial_wall_s.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PHASES = ("tokenize_s", "load_s", "train_s", "val_s", "save_s")


def trial_phases(result_file: Path) -> dict[str, float] | None:
    rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    if not rows or "train_s" not in rows[-1]:
        return None
    attempts = {row["attempt_started_at"]: row for row in rows}.values()  # setup is paid once per attempt
    phases = {key: sum(row[key] for row in attempts) for key in ("tokenize_s", "load_s")}
    phases.update({key: sum(row[key] for row in rows) for key in ("train_s", "val_s", "save_s")})
    phases["wall_s"] = rows[-1]["trial_wall_s"]
    phases["other_s"] = phases["wall_s"] - sum(phases[key] for key in PHASES)
    return phases


def main() -> int:
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "sweep.json").is_file():
        print("usage: python -m bench.trial_overhead results/<name>  (an experiment directory)", file=sys.stderr)
        return 2
    sweep_dir = Path(sys.argv[1])
    trials = {path.parent.name: phases for path in sorted(sweep_dir.glob("*/result.json"))
              if (phases := trial_phases(path))}
    columns = (*PHASES, "other_s", "wall_s")
    print(f"# per-trial wall time by phase (seconds), {sweep_dir}")
    print("| trial | " + " | ".join(column.removesuffix("_s") for column in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, phases in trials.items():
        print(f"| {name} | " + " | ".join(f"{phases[column]:.1f}" for column in columns) + " |")
    total = {column: sum(phases[column] for phases in trials.values()) for column in columns}
    print("| all trials | " + " | ".join(f"{total[column]:.1f}" for column in columns) + " |")
    print("| share of wall | " + " | ".join(f"{100 * total[column] / total['wall_s']:.0f}%" for column in columns)
          + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Export a sweep's winner as a classifier anyone can load: weights, tokenizer and the decision rule it was tuned with.

    python -m analysis.export results/<experiment> [--model M] [--out DIR] [--single]

The model (default: the sweep's best, chosen on validation as in analysis.best_trials) becomes a standard Hugging
Face model directory (config with `id2label`, tokenizer, safetensors weights) that
`transformers.pipeline("text-classification", model=DIR, top_k=None)` loads offline, and beside the weights
`decision.json`, the decision rule that makes it the model the sweep's table reports:

- `task`: "multi_label" (sigmoid per label; label i is predicted when its probability >= `thresholds[i]`) or
  "single_label" (softmax; the most probable label).
- `labels`: label names in the model's class order; `thresholds`: the per-class thresholds chosen on validation
  for `metric` (macro_f1, micro_f1 or jaccard) by `threshold_method` (multi-label only).
- `members`: model dirs, relative to DIR, whose probabilities are averaged before the thresholds apply: ["."] for
  a single trial; for a winner confirmed over seeds (`--confirm-seeds`), the seed ensemble: "." (the search's best
  trial) and `members/seed-<n>`, with the ensemble's own thresholds (each member's thresholds alone are in
  `member_thresholds`, for whoever loads one member with `pipeline`). `--single` exports the best trial alone.
- `text`: how texts are prepared before tokenizing (`preprocess`, `max_length`), as the trials did.
- `provenance`: sweep, trial dirs, config, seeds, library versions, validation and test scores.

analysis.decision owns this format (the rule's fields, reading and checking it); analysis.predict applies all of it.
Encoders trained with QLoRA are exported merged: the 4-bit body is dequantized to the exact weights the adapters
trained against and the adapters are added into them, so the export is plain float weights with no bitsandbytes or
peft needed. Decoders (QLoRA adapters on a 4-bit base of 0.6B-7B weights)
export their adapters, tokenizer and decision rule, and name the base (`base`: source and revision) to load them on;
merging would write the whole base.

The export is written to a temporary dir beside DIR and renamed into place when complete: an interrupted export
leaves no half-written dir. An existing export at DIR is replaced; any other existing dir is refused.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from pathlib import Path

from analysis.decision import DECISION_FILE, rule_fields, selected_metric, write_decision
from analysis.seeds import SeedRun, ensemble
from analysis.trials import ExperimentError, best_per_model, best_runs, evaluate, read_json, read_trials

SCORE_KEYS = ("macro_f1", "micro_f1", "jaccard", "accuracy", "weighted_f1")


def chosen_runs(sweep_dir: Path, model: str | None) -> tuple[str, list[SeedRun]]:
    """(model name, its best trial followed by the confirmation trials of its configuration)."""
    trials = read_trials(sweep_dir)
    runs = best_runs(trials)
    rows, _ = best_per_model(trials, runs)
    if not rows:
        raise ExperimentError(f"{sweep_dir}: no trial finished an epoch with saved predictions")
    names = [row["model"] for row in rows]
    if model is None:
        model = names[0]  # rows are sorted best first by validation
    elif model not in names:
        raise ExperimentError(f"--model {model}: not a model of {sweep_dir} with a finished trial "
                              f"(one of: {', '.join(sorted(names))})")
    return model, runs[0][model]  # runs: (seed runs per model, skipped trials)


def scores(arrays: dict) -> dict:
    """Validation and test scores of the exported rule, at its thresholds."""
    row = evaluate(arrays)
    return {split: {key: round(float(row[f"{split}_{key}"]), 6) for key in SCORE_KEYS if f"{split}_{key}" in row}
            for split in ("val", "test") if any(f"{split}_{key}" in row for key in SCORE_KEYS)}


def trial_config(run: SeedRun) -> dict:
    return read_json(Path(run.row["trial_dir"]) / "params.json")


def save_tokenizer(config: dict, destination: Path, decoder: bool = False) -> None:
    """The tokenizer the trial used (its source at its pinned revision), saved with the model."""
    # heavy imports (transformers) where used: `--help` and a bad sweep dir answer without them
    if decoder:
        from trainables.decoder import load_tokenizer

        tokenizer = load_tokenizer(config["model_source"], config.get("model_revision"))
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(config["model_source"], revision=config.get("model_revision"))
    tokenizer.save_pretrained(destination)


def merged_qlora_encoder(config: dict, saved: Path, label_names: list[str], multi_label: bool):
    """The QLoRA trial's model as plain float weights: the body loaded in 4-bit as the trial had it, dequantized
    (the weights the adapters trained against, exactly), then the adapters and head from `saved` merged in."""
    import torch  # heavy imports where used: only a QLoRA export needs peft
    from peft import PeftModel

    from trainables.encoder import four_bit_body, from_pretrained_quietly

    with warnings.catch_warnings():  # bitsandbytes warns that CPU 4-bit is slow: it runs once, here
        warnings.simplefilter("ignore")
        body = from_pretrained_quietly(
            config["model_source"], revision=config.get("model_revision"), ignore_mismatched_sizes=True,
            quantization_config=four_bit_body(torch.float32), dtype=torch.float32, device_map={"": "cpu"},
            num_labels=len(label_names), id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            problem_type="multi_label_classification" if multi_label else "single_label_classification")
        body = body.dequantize()
    return PeftModel.from_pretrained(body, saved).merge_and_unload().eval()


def export_member(run: SeedRun, destination: Path) -> dict:
    """One trial's best checkpoint as a model dir at `destination`; returns what the decision file says of it."""
    config = trial_config(run)
    checkpoint = Path(run.row["trial_dir"]) / run.row["checkpoint"]
    destination.mkdir(parents=True)
    if (checkpoint / "adapter").is_dir():  # a decoder: adapters (and a head) over a 4-bit base
        shutil.copytree(checkpoint / "adapter", destination, dirs_exist_ok=True)
        save_tokenizer(config, destination, decoder=True)
        return {"kind": "decoder_adapter", "mode": config.get("mode"), "template": config.get("template"),
                "base": {"source": str(config["model_source"]), "revision": config.get("model_revision")}}
    if config.get("variant") == "qlora":
        label_names = [str(name) for name in run.arrays["label_names"]]
        merged_qlora_encoder(config, checkpoint / "model", label_names,
                             "per_class_thresholds" in run.arrays).save_pretrained(destination)
    else:  # baseline and QAT checkpoints hold plain float weights with the label names in their config
        for name in ("config.json", "model.safetensors"):
            shutil.copy2(checkpoint / "model" / name, destination / name)
    save_tokenizer(config, destination)
    return {"kind": "encoder", "variant": config.get("variant", "baseline")}


def decision_rule(model: str, seeds: list[SeedRun], sweep_dir: Path, members: list[str], kind: dict) -> dict:
    """decision.json: the best trial's rule, or its seed ensemble's (thresholds chosen again on validation for the
    averaged probabilities, exactly as analysis.best_trials reports the ensemble)."""
    import torch  # heavy imports where used (their versions only): `--help` stays light
    import transformers

    best = seeds[0]
    metric = selected_metric(best.arrays)
    config = trial_config(best)
    method = config.get("thresholds", "exact")
    arrays = ensemble(seeds, metric, method) if len(seeds) > 1 else best.arrays
    sweep = read_json(sweep_dir / "sweep.json") if (sweep_dir / "sweep.json").is_file() else {}
    return {
        **rule_fields(arrays, metric, method, members, [run.arrays for run in seeds]),
        "text": {"preprocess": config.get("preprocess", "none"), "max_length": int(config.get("max_length", 64))},
        **kind,
        "provenance": {
            "sweep": str(sweep_dir.resolve()), "dataset": sweep.get("dataset"), "model": model,
            "trials": [str(Path(run.row["trial_dir"]).resolve()) for run in seeds],
            "checkpoints": [run.row["checkpoint"] for run in seeds],
            "seeds": [run.row["config_seed"] for run in seeds],
            "config": best.row["config"], "scores": scores(arrays),
            "sweep_versions": sweep.get("versions"),
            "exported_with": {"torch": torch.__version__, "transformers": transformers.__version__},
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }


def export(sweep_dir: Path, model: str | None = None, out: Path | None = None, single: bool = False) -> Path:
    """Write the export dir (default `<sweep_dir>/export/<model>`, `<model>-single` with `single`) and return it.
    `single`: the search's best trial alone with its own thresholds, not its seed ensemble."""
    sweep_dir = Path(sweep_dir)
    model, seeds = chosen_runs(sweep_dir, model)
    seeds = seeds[:1] if single else seeds
    out = Path(out) if out else sweep_dir / "export" / (model.replace("/", "_") + ("-single" if single else ""))
    if out.exists() and not (out / DECISION_FILE).is_file():
        raise ExperimentError(f"--out {out}: exists and is not an export (no {DECISION_FILE}); choose another dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = out.with_name(f".{out.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    try:
        members = ["."] + [f"members/seed-{run.row['config_seed']}" for run in seeds[1:]]
        kinds = [export_member(run, building / member) for run, member in zip(seeds, members)]
        write_decision(building, decision_rule(model, seeds, sweep_dir, members, kinds[0]))
        if out.exists():
            shutil.rmtree(out)
        building.rename(out)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path)
    parser.add_argument("--model", help="the model (study) to export; default: the sweep's best by validation")
    parser.add_argument("--out", type=Path, help="the export dir; default: <experiment_dir>/export/<model>")
    parser.add_argument("--single", action="store_true",
                        help="the best trial alone, not its seed ensemble (a seed ensemble of N predicts N times "
                             "slower); default out: <experiment_dir>/export/<model>-single")
    args = parser.parse_args(argv)
    try:
        out = export(args.experiment_dir, args.model, args.out, args.single)
    except (ExperimentError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rule = read_json(out / DECISION_FILE)
    test = rule["provenance"]["scores"].get("test", {})
    rule_text = "thresholds tuned for" if rule["task"] == "multi_label" else "argmax, selected by"
    print(f"{out}: {rule['provenance']['model']} ({len(rule['members'])} member(s), {rule['task']}, {rule_text} "
          f"{rule['metric']})" + (f"; test {rule['metric']} {test[rule['metric']]:.4f}" if rule["metric"] in test
                                  else ""))
    print(f"predict with: python -m analysis.predict {out} --input FILE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

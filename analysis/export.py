"""Export a sweep's winner as a classifier anyone can load: weights, tokenizer and the decision rule it was tuned with.

    python -m analysis.export results/<experiment> [--model M] [--out DIR] [--single] [--ensemble seeds|trials]

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
  `--ensemble trials` exports the sweep's trial ensemble instead (analysis.trial_ensemble: greedy selection with
  replacement over every trial, all models; default DIR `<experiment>/export/trial-ensemble`): "." its most picked
  trial and `members/<trial dir>` the others. It is opt-in, never chosen for being best on validation: its N members
  predict N times slower, and a gain the selection found on validation may not hold on test (the table says).
- `weights`: one whole number per member, the probabilities' weights in the average: how many times the greedy
  selection picked each trial of a trial ensemble; 1 each for a seed ensemble or a single trial.
- `text`: how texts are prepared before tokenizing (`preprocess`, `max_length`), as the trials did.
- `predict_dtype`: the precision the trial computed the probabilities in that chose the thresholds and the scores
  ("float32" for encoders: analysis.predict computes the same, and refuses an export it cannot reproduce), and for
  QLoRA `body_compute_dtype`, the dtype its 4-bit body was loaded and trained in; as the best trial's predictions.npz
  records them (absent for checkpoints written before they were recorded).
- `provenance`: sweep, trial dirs, config, seeds, library versions, validation and test scores.

analysis.decision owns this format (the rule's fields, reading and checking it); analysis.predict applies all of it.
Encoders trained with QLoRA are exported merged: the 4-bit body, loaded in the trial's `body_compute_dtype`, is
dequantized into fp32, to the exact weights the trial's predictions computed with, and the adapters are added into
them, so the export is plain float weights with no bitsandbytes or peft needed. Decoders (QLoRA adapters on a 4-bit
base of 0.6B-7B weights) export their adapters, tokenizer and decision rule, and name the base (`base`: source and
revision) to load them on; merging would write the whole base.

The export is written to a temporary dir beside DIR and renamed into place when complete: an interrupted export
leaves no half-written dir. An existing export at DIR is replaced; any other existing dir is refused. Before anything
is written, every member's checkpoint is checked (analysis.checks): its safetensors headers against the files' sizes
(a truncated copy is refused here, not met in analysis.predict), a float checkpoint's config.json labels and task
against the trial's predictions and its weights' shapes against its config; and DIR's parent must be writable. A
refusal is one line naming the file or flag, exit 2, with nothing written (no dir made, DIR's parents included);
so is an ensemble whose members' label names or task differ (their probabilities cannot be averaged).
"""
from __future__ import annotations

import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from analysis.checks import (CheckError, OneLineParser, check_safetensors, load_classifier, model_dir, new_dirs,
                             output_dir)
from analysis.decision import DECISION_FILE, rule_fields, selected_metric, write_decision
from analysis.seeds import SeedRun, ensemble
from analysis.trial_ensemble import trial_ensemble
from analysis.trials import (ExperimentError, best_per_model, best_runs, evaluate, read_json, read_trials,
                             require_test_predictions, trial_runs)

SCORE_KEYS = ("macro_f1", "micro_f1", "jaccard", "accuracy", "weighted_f1")
ENSEMBLES = ("seeds", "trials")


@dataclass
class Chosen:
    """What an export holds: its name, the runs of its members (dirs in the export: "." first) with their weights,
    and the probabilities its rule decides on (predictions.npz layout) with how their thresholds were chosen."""
    name: str
    runs: list[SeedRun]
    members: list[str]
    weights: list[int]
    arrays: dict
    method: str


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


def seeds_chosen(sweep_dir: Path, model: str | None, single: bool) -> Chosen:
    """The model's best trial and, unless `single`, its seed ensemble (thresholds chosen again on validation for the
    averaged probabilities, exactly as analysis.best_trials reports the ensemble)."""
    model, seeds = chosen_runs(sweep_dir, model)
    seeds = seeds[:1] if single else seeds
    best = seeds[0]
    method = trial_config(best).get("thresholds", "exact")
    arrays = ensemble(seeds, selected_metric(best.arrays), method) if len(seeds) > 1 else best.arrays
    members = ["."] + [f"members/seed-{run.row['config_seed']}" for run in seeds[1:]]
    return Chosen(model, seeds, members, [1] * len(seeds), arrays, method)


def trials_chosen(sweep_dir: Path) -> Chosen:
    """The sweep's trial ensemble, chosen again from every trial's saved predictions (deterministic: the one
    analysis.best_trials reports)."""
    runs, _ = trial_runs(read_trials(sweep_dir))
    joint = trial_ensemble(runs)
    if joint is None:
        raise ExperimentError(f"{sweep_dir}: no trial ensemble (it needs two trials with predictions of the same rows "
                              f"and labels)")
    require_test_predictions(joint.members)
    members = ["."] + [f"members/{Path(run.row['trial_dir']).name}" for run in joint.members[1:]]
    return Chosen("trial ensemble", joint.members, members, joint.weights, joint.arrays, "exact")


def check_same_labels(runs: list[SeedRun]) -> None:
    """An ensemble's members predict the same labels, in the same order, for the same task: otherwise averaging
    their probabilities mixes classes. Raises CheckError naming both members' predictions."""
    def labels(run: SeedRun) -> tuple:
        return ([str(name) for name in run.arrays.get("label_names", [])], "per_class_thresholds" in run.arrays)

    first = runs[0]
    for run in runs[1:]:
        if labels(run) != labels(first):
            raise CheckError(f"{Path(run.row['trial_dir']) / run.row['checkpoint'] / 'predictions.npz'}: its label "
                             f"names or task differ from {Path(first.row['trial_dir']) / first.row['checkpoint']}'s; "
                             f"an ensemble averages the probabilities of the same labels")


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


def precision(arrays: dict) -> dict:
    """How a trial computed its saved probabilities and (QLoRA) the dtype its 4-bit body was loaded in, as its
    predictions.npz records them (trainables.encoder); nothing for checkpoints written before they were recorded."""
    return {key: str(arrays[key]) for key in ("predict_dtype", "body_compute_dtype") if key in arrays}


def merged_qlora_encoder(config: dict, saved: Path, label_names: list[str], multi_label: bool, body_dtype: str):
    """The QLoRA trial's model as plain fp32 weights: the body loaded in 4-bit as the trial had it, in its
    `body_dtype` (bf16-rounded weights quantize to other NF4 blocks), dequantized straight into fp32 (the weights its
    fp32 predictions computed with, exactly: trainables.encoder.four_bit_in_fp32), then the adapters and head from
    `saved` merged in."""
    import torch  # heavy imports where used: only a QLoRA export needs peft
    from bitsandbytes.nn import Linear4bit
    from peft import PeftModel

    from trainables.encoder_model import four_bit_body, from_pretrained_quietly

    with warnings.catch_warnings():  # bitsandbytes warns that CPU 4-bit is slow: it runs once, here
        warnings.simplefilter("ignore")
        body = from_pretrained_quietly(
            config["model_source"], revision=config.get("model_revision"), ignore_mismatched_sizes=True,
            quantization_config=four_bit_body(getattr(torch, body_dtype)), dtype=getattr(torch, body_dtype),
            device_map={"": "cpu"},
            num_labels=len(label_names), id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            problem_type="multi_label_classification" if multi_label else "single_label_classification")
        for module in body.modules():  # into fp32 directly, not into the load dtype and up from there
            if isinstance(module, Linear4bit):
                module.weight.quant_state.dtype = torch.float32
        body = body.dequantize(dtype=torch.float32).float()
    return PeftModel.from_pretrained(body, saved).merge_and_unload().eval()


def check_member(run: SeedRun) -> None:
    """What export_member copies or loads is whole and is the model the trial's predictions came from: the label
    names saved with them, the weights' safetensors headers against the files' sizes and, for a float checkpoint
    (copied as it is), its config's labels and task, and its weights loaded as exactly its config's model. Raises
    CheckError naming the file."""
    checkpoint = Path(run.row["trial_dir"]) / run.row["checkpoint"]
    if "label_names" not in run.arrays:
        raise CheckError(f"{checkpoint / 'predictions.npz'}: no label_names (saved by trials since labels were "
                         f"named); re-run the trial to export it")
    if (checkpoint / "adapter").is_dir():
        check_safetensors(checkpoint / "adapter" / "adapter_model.safetensors")
    elif trial_config(run).get("variant") == "qlora":
        check_safetensors(checkpoint / "model" / "adapter_model.safetensors")
    else:
        labels = [str(name) for name in run.arrays["label_names"]]
        model_dir(checkpoint / "model", labels, "per_class_thresholds" in run.arrays, "predictions.npz label_names")
        load_classifier(checkpoint / "model")


def export_member(run: SeedRun, destination: Path) -> dict:
    """One trial's best checkpoint as a model dir at `destination`; returns what the decision file says of it."""
    config = trial_config(run)
    checkpoint = Path(run.row["trial_dir"]) / run.row["checkpoint"]
    destination.mkdir(parents=True)
    if (checkpoint / "adapter").is_dir():  # a decoder: adapters (and a head) over a 4-bit base
        shutil.copytree(checkpoint / "adapter", destination, dirs_exist_ok=True)
        save_tokenizer(config, destination, decoder=True)
        return {"kind": "decoder_adapter", "mode": config.get("mode"), "template": config.get("template"),
                "base": {"source": str(config["model_source"]), "revision": config.get("model_revision")},
                **precision(run.arrays)}
    if config.get("variant") == "qlora":
        label_names = [str(name) for name in run.arrays["label_names"]]
        merged_qlora_encoder(config, checkpoint / "model", label_names, "per_class_thresholds" in run.arrays,
                             precision(run.arrays).get("body_compute_dtype", "float32")).save_pretrained(destination)
    else:  # baseline and QAT checkpoints hold plain float weights with the label names in their config
        for name in ("config.json", "model.safetensors"):
            shutil.copy2(checkpoint / "model" / name, destination / name)
    save_tokenizer(config, destination)
    return {"kind": "encoder", "variant": config.get("variant", "baseline"), **precision(run.arrays)}


def decision_rule(chosen: Chosen, sweep_dir: Path, kind: dict) -> dict:
    """decision.json: the chosen rule (a trial's, a seed ensemble's or the trial ensemble's), with where it came from;
    `config` is the "." member's."""
    import torch  # heavy imports where used (their versions only): `--help` stays light
    import transformers

    best, arrays = chosen.runs[0], chosen.arrays
    config = trial_config(best)
    sweep = read_json(sweep_dir / "sweep.json") if (sweep_dir / "sweep.json").is_file() else {}
    return {
        **rule_fields(arrays, selected_metric(arrays), chosen.method, chosen.members,
                      [run.arrays for run in chosen.runs], chosen.weights),
        "text": {"preprocess": config.get("preprocess", "none"), "max_length": int(config.get("max_length", 64))},
        **kind,
        "provenance": {
            "sweep": str(sweep_dir.resolve()), "dataset": sweep.get("dataset"), "model": chosen.name,
            "trials": [str(Path(run.row["trial_dir"]).resolve()) for run in chosen.runs],
            "checkpoints": [run.row["checkpoint"] for run in chosen.runs],
            "seeds": [run.row["config_seed"] for run in chosen.runs],
            "config": best.row["config"], "scores": scores(arrays),
            "sweep_versions": sweep.get("versions"),
            "exported_with": {"torch": torch.__version__, "transformers": transformers.__version__},
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }


def export(sweep_dir: Path, model: str | None = None, out: Path | None = None, single: bool = False,
           ensemble: str = "seeds") -> Path:
    """Write the export dir (default `<sweep_dir>/export/<model>`, `<model>-single` with `single`,
    `trial-ensemble` with `ensemble` "trials") and return it. `single`: the search's best trial alone with its own
    thresholds, not its seed ensemble; `ensemble` "trials": the trial ensemble of all the sweep's trials."""
    sweep_dir = Path(sweep_dir)
    if ensemble == "trials":
        chosen, default = trials_chosen(sweep_dir), "trial-ensemble"
    else:
        chosen = seeds_chosen(sweep_dir, model, single)
        default = chosen.name.replace("/", "_") + ("-single" if single else "")
    out = Path(out) if out else sweep_dir / "export" / default
    if out.exists() and not (out / DECISION_FILE).is_file():
        raise ExperimentError(f"--out {out}: exists and is not an export (no {DECISION_FILE}); choose another dir")
    output_dir("--out", out)
    check_same_labels(chosen.runs)
    for run in chosen.runs:
        check_member(run)
    building = out.with_name(f".{out.name}.building")
    with new_dirs(out.parent):
        shutil.rmtree(building, ignore_errors=True)
        try:
            kinds = [export_member(run, building / member) for run, member in zip(chosen.runs, chosen.members)]
            write_decision(building, decision_rule(chosen, sweep_dir, kinds[0]))
            if out.exists():
                shutil.rmtree(out)
            building.rename(out)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m analysis.export", description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path)
    parser.add_argument("--model", help="the model (study) to export; default: the sweep's best by validation")
    parser.add_argument("--out", type=Path, help="the export dir; default: <experiment_dir>/export/<model>")
    parser.add_argument("--single", action="store_true",
                        help="the best trial alone, not its seed ensemble (a seed ensemble of N predicts N times "
                             "slower); default out: <experiment_dir>/export/<model>-single")
    parser.add_argument("--ensemble", choices=ENSEMBLES, default="seeds",
                        help="seeds (default): the model's seed ensemble where it was confirmed, else its best trial; "
                             "trials: the trial ensemble of all the sweep's trials (greedy selection on validation, "
                             "weighted members); default out: <experiment_dir>/export/trial-ensemble")
    args = parser.parse_args(argv)
    if args.ensemble == "trials" and (args.model or args.single):
        parser.error("--ensemble trials: chooses its members from every model's trials; drop --model and --single")
    try:
        out = export(args.experiment_dir, args.model, args.out, args.single, args.ensemble)
    except (CheckError, ExperimentError, OSError) as error:
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

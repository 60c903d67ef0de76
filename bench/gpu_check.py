"""What to run first on a machine with an NVIDIA GPU: does this stack train here, in both precisions, in 4-bit,
four trials to one GPU, and does a sweep's winner predict what its table reports? A few minutes; one table of
PASS / FAIL / SKIP.

    python -m bench.gpu_check                                   # encoder minilm, decoder qwen3-0.6b
    python -m bench.gpu_check --encoder DIR --decoder DIR --steps 300

Without CUDA it prints one line and exits 0: nothing here can be checked on CPUs. It exits 1 when a check
fails, 2 on a bad flag. A check that raises (a model that does not load, CUDA out of memory) is a FAIL row with
the error's first line, and the other checks still run: the script prints its table, never a traceback.

The data are synthetic emotion texts, a cue word per label among filler words (e.g. "so glad the day was"),
multi-label like GoEmotions, so a model that trains must lower its loss. Checks:

- encoder bf16 / encoder fp16: --steps optimizer steps of the encoder (trainables.encoder.load_encoder, AdamW,
  BCE) under autocast in that precision, fp16 with a GradScaler as trials use it before Ampere. PASS: every loss
  finite and the last tenth of the steps' mean loss below the first tenth's. The note marks the precision trials
  use on this GPU (trainables.device.autocast_dtype); bf16 before Ampere is emulated and slow.
- decoder QLoRA: one trial of the real decoder trainable (trainables/decoder.py) through Ray Tune with its GPU
  share: 4-bit NF4 load, LoRA steps in generation mode, label-likelihood scoring and greedy generation on
  validation, a checkpoint. SKIP when --decoder cannot be resolved here (no hub, not in the HF cache). PASS: the
  trial finished with a finite training loss.
- 4 encoders, 1 GPU: four trials of the real encoder trainable through Ray Tune on a one-GPU Ray, 0.25 GPU
  each. PASS: all four finished, ran at the same time (their spans overlap), on the same GPU id, and each stayed
  within a quarter of the GPU's memory less one CUDA context (`peak_gpu_mb` where trials report it; trials cap
  their CUDA memory to that, trainables.gpu_memory.memory_fraction, so one that overran would have failed). Its
  examples/s is the four trials' sum.
- sweep round trip: what a user does with a sweep, end to end. The synthetic rows (2000 train, 200 dev, 200
  test) are written as GoEmotions release files, each cue's label under its GoEmotions id; once this script's Ray
  is shut down, `python sweeps/goemotions_raw.py --data-dir ... --models <--encoder> --budget smoke --num-samples 1
  --confirm-seeds 0 --device gpu --max-failures 0` runs in its own process (every row used); its best trial is
  exported alone (analysis.export --single) and the test texts predicted from the export (analysis.predict, on
  CPU). PASS: every test score best_trials.json reports for that trial comes back from the export's decisions
  (round_trip_verdict: within 1e-9); the note counts the test rows the export decides otherwise than the trial's
  saved GPU predictions did. A sweep that exits non-zero is a FAIL with its last stderr line.

Peak GPU memory is what torch allocated (torch.cuda.max_memory_allocated: this process for the encoder checks,
the trial's own process for the others), not what nvidia-smi shows (that adds the CUDA context and cache).
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, count, islice
from pathlib import Path

import numpy as np
import torch

from sweeps.cli import OneLineParser, positive
from trainables.data import GOEMOTIONS_LABELS, EmotionData, Split
from trainables.gpu_memory import memory_fraction

CUES = {"joy": ("happy", "glad", "delighted"), "sadness": ("sad", "gloomy", "crying"),
        "anger": ("angry", "furious", "annoyed"), "fear": ("scared", "afraid", "terrified"),
        "surprise": ("shocked", "amazed", "astonished"), "love": ("love", "adore", "sweetheart")}
FILLER = ("the", "day", "was", "really", "so", "and", "my", "friend", "today", "it", "felt", "at", "work", "this",
          "morning", "after", "we", "all", "about", "that")
PRECISIONS = {torch.bfloat16: "bf16", torch.float16: "fp16"}
PACKED_TRIALS, PACKED_SHARE = 4, 0.25
DECODER_CHECK, PACKED_CHECK = "decoder QLoRA", f"{PACKED_TRIALS} encoders, 1 GPU"
ROUND_TRIP_CHECK = "sweep round trip"
ROUND_TRIP_ROWS = (2000, 200)  # train; dev and test each
ROUND_TRIP_TOLERANCE = 1e-9
SWEEP_FILE = Path(__file__).resolve().parents[1] / "sweeps" / "goemotions_raw.py"
# The best trial's own test scores in best_trials.json (analysis.trials.evaluate) and the entries of
# trainables.metrics.multilabel_report they are; its seeds' mean and sd (--confirm-seeds) are not one trial's scores.
REPORTED_TEST_SCORES = {"test_macro_f1": "macro_f1_per_class", "test_micro_f1": "micro_f1_per_class",
                        "test_jaccard": "jaccard_per_class", "test_macro_f1_global": "macro_f1_global",
                        "test_micro_f1_global": "micro_f1_global"}


@dataclass
class Check:
    name: str
    result: str  # PASS | FAIL | SKIP
    peak_gpu_mb: float | None = None
    examples_per_s: float | None = None
    note: str = ""


def encoder_check_name(dtype: torch.dtype) -> str:
    return f"encoder {PRECISIONS[dtype]}"


def one_line(error: BaseException) -> str:
    """The exception's type and the first line of its message, as a cell of the markdown table."""
    message = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return (f"{type(error).__name__}: {message}" if message else type(error).__name__).replace("|", "\\|")


def guarded(name: str, check: Callable[..., Check], *args) -> Check:
    """The check's row, or a FAIL row with the one-line reason when it raises, so that one check's failure
    (a model that does not load, CUDA out of memory) neither hides the other checks' rows nor ends the script
    in a traceback."""
    try:
        return check(*args)
    except Exception as error:  # any failure of the check is its finding
        return Check(name, "FAIL", note=one_line(error))


def synthetic_data(train_rows: int, eval_rows: int, seed: int = 0) -> EmotionData:
    """Multi-label rows (a fifth with two labels), each label's cue word somewhere among 4-11 filler words."""
    rng = np.random.default_rng(seed)
    names = list(CUES)

    def split(rows: int) -> Split:
        texts, labels = [], np.zeros((rows, len(names)), dtype=np.float32)
        for row in range(rows):
            chosen = rng.choice(len(names), size=1 if rng.random() < 0.8 else 2, replace=False)
            labels[row, chosen] = 1.0
            words = [str(rng.choice(CUES[names[c]])) for c in chosen]
            words += [str(word) for word in rng.choice(FILLER, size=rng.integers(4, 12))]
            rng.shuffle(words)
            texts.append(" ".join(words))
        return Split(texts, labels)

    return EmotionData("synthetic", names, True, split(train_rows), split(eval_rows), split(eval_rows))


def encoder_precision_check(source: str, revision: str | None, data: EmotionData, device: torch.device,
                            dtype: torch.dtype, steps: int, trials_dtype: torch.dtype | None) -> Check:
    """`steps` training steps of the encoder under autocast in `dtype` (fp16 with a GradScaler), as a trial
    trains, on `device`: are the losses finite and falling, how fast, how much memory."""
    from transformers import AutoTokenizer

    from trainables.encoder import collate, length_grouped_batches
    from trainables.encoder_model import load_encoder

    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = tokenizer(data.train.texts, truncation=True, max_length=64, return_attention_mask=False,
                          return_token_type_ids=False)["input_ids"]
    lengths = np.array([len(row) for row in input_ids])
    labels = torch.tensor(data.train.labels)
    torch.manual_seed(0)
    model = load_encoder({"model_source": source, "model_revision": revision}, data, device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    batches = chain.from_iterable(length_grouped_batches(lengths, 32, epoch) for epoch in count())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    losses, seen, started = [], 0, time.perf_counter()
    for indices in islice(batches, steps):
        with torch.autocast(device.type, dtype=dtype):
            logits = model(**collate(input_ids, indices, pad_id, device)).logits.float()
        loss = loss_fn(logits, labels[indices].to(device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
        seen += len(indices)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()

    tenth = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))
    finite = all(math.isfinite(loss) for loss in losses)
    note = f"{len(losses)} steps, loss {first:.3f} -> {last:.3f}"
    if not finite:
        note += f"; non-finite loss at step {next(i for i, loss in enumerate(losses) if not math.isfinite(loss)) + 1}"
    if dtype == trials_dtype:
        note += "; what trials use on this GPU"
    return Check(encoder_check_name(dtype), "PASS" if finite and last < first else "FAIL", peak, seen / seconds, note)


def run_trials(trainable, data: EmotionData, param_space: dict, resources: dict, storage: Path, name: str) -> list:
    """Tune results (one per trial) of the real trainable, never retried: a failure here is the finding."""
    from ray import tune

    tuner = tune.Tuner(tune.with_resources(tune.with_parameters(trainable, data=data), resources),
                       param_space=param_space,
                       run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                                 failure_config=tune.FailureConfig(max_failures=0)))
    return list(tuner.fit())


def error_line(result) -> str:
    lines = str(result.error).strip().splitlines()
    return lines[-1] if lines else type(result.error).__name__


def decoder_check(model, data: EmotionData, cpus: int, storage: Path) -> Check:
    """One QLoRA trial of the decoder trainable in generation mode: train, score labels, generate, checkpoint."""
    from sweeps.cluster import local_cluster
    from sweeps.plan import size_trials
    from trainables.decoder import train_decoder

    config = {"model": model.name, "model_source": model.source, "model_revision": model.revision,
              "mode": "generation", "epochs": 1, "batch_size": 4, "eval_batch_size": 8, "max_length": 48}
    share = size_trials(model, local_cluster(), True, batch_size=config["batch_size"],
                        max_length=config["max_length"], decoder=True).gpus  # as a sweep sizes it
    (result,) = run_trials(train_decoder, data, config, {"cpu": cpus, "gpu": share}, storage, "decoder")
    if result.error:
        return Check(DECODER_CHECK, "FAIL", note=f"{model.name}: {error_line(result)}")
    metrics = result.metrics
    finite = math.isfinite(metrics["train_loss"])
    return Check(DECODER_CHECK, "PASS" if finite else "FAIL", metrics.get("peak_gpu_mb"),
                 metrics["train_examples_per_s"],
                 f"{model.name} ({model.params_m:.0f}M, {share:g} GPU): loss "
                 f"{metrics['train_loss']:.3f}, val macro-F1 {metrics['val_macro_f1']:.3f}, generation parse "
                 f"failures {metrics['parse_failure_rate']:.0%}")


def packing_verdict(trials: list[dict], share: float, gpu_mb: float | None) -> tuple[str, str]:
    """(PASS or FAIL, why) for trials that should have shared one GPU at the same time, each within its share
    of the memory less one CUDA context, the cap trials set (memory_fraction): the contexts of all the packed trials
    must fit beside their peaks. `trials` are their last results; a trial that errored is {"error": its last
    line}."""
    if errors := [trial["error"] for trial in trials if "error" in trial]:
        return "FAIL", f"{len(errors)} of {len(trials)} trials failed: {errors[0]}"
    spans = [(trial["attempt_started_at"], trial["attempt_started_at"] + trial["trial_wall_s"]) for trial in trials]
    together_s = min(end for _, end in spans) - max(start for start, _ in spans)
    gpu_ids = {trial["gpu_ids"] for trial in trials}
    peaks = [trial.get("peak_gpu_mb") for trial in trials]
    problems = []
    if together_s <= 0:
        problems.append("not all at the same time")
    if len(gpu_ids) != 1 or "" in gpu_ids:
        problems.append(f"GPU ids {sorted(gpu_ids)}, not one GPU")
    cap_mb = memory_fraction(share, gpu_mb * 2**20 / 1e9) * gpu_mb if gpu_mb else None
    if cap_mb and None not in peaks and max(peaks) > cap_mb:
        problems.append(f"a trial peaked at {max(peaks):,.0f} MiB, over its {share:g} share less a CUDA context "
                        f"({cap_mb:,.0f} MiB)")
    if problems:
        return "FAIL", "; ".join(problems)
    memory = ("each within its share" if None not in peaks else
              "no per-trial peak reported (each trial's CUDA memory is capped to its share less a context)")
    return "PASS", (f"{len(trials)} trials on GPU {gpu_ids.pop()}, all running together for {together_s:.0f} s; "
                    f"{memory}")


def packing_check(model, data: EmotionData, cpus: int, gpu_mb: float | None, storage: Path) -> Check:
    """Four encoder trials at a quarter GPU each, all at once through Ray, as a sweep packs small models."""
    from ray import tune

    from trainables.encoder import train_encoder

    config = {"model": model.name, "model_source": model.source, "model_revision": model.revision, "epochs": 2,
              "seed": tune.grid_search(list(range(PACKED_TRIALS)))}
    results = run_trials(train_encoder, data, config, {"cpu": cpus, "gpu": PACKED_SHARE}, storage, "packed")
    trials = [{"error": error_line(result)} if result.error else result.metrics for result in results]
    verdict, note = packing_verdict(trials, PACKED_SHARE, gpu_mb)
    finished = [trial for trial in trials if "error" not in trial]
    peaks = [trial["peak_gpu_mb"] for trial in finished if trial.get("peak_gpu_mb") is not None]
    return Check(PACKED_CHECK, verdict, max(peaks) if peaks else None,
                 sum(trial["train_examples_per_s"] for trial in finished) or None, f"{model.name}: {note}")


def ray_checks(encoder, decoder, decoder_problem: str | None, gpu_mb: float, storage: Path) -> list[Check]:
    """The decoder and packing checks, through Ray Tune on a one-GPU Ray started here for them; a Ray that does
    not start fails both, with its reason, rather than the script."""
    import ray

    cpus_per_trial = max(1, (os.cpu_count() or 1) // PACKED_TRIALS)  # four trials must fit at once
    try:
        ray.init(address="local", num_gpus=1, num_cpus=cpus_per_trial * PACKED_TRIALS, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False)
    except Exception as error:  # any failure to start is both checks' finding
        why = f"Ray did not start: {one_line(error)}"
        return [Check(DECODER_CHECK, "FAIL", note=why), Check(PACKED_CHECK, "FAIL", note=why)]
    try:
        decoder_row = (Check(DECODER_CHECK, "SKIP", note=decoder_problem) if decoder is None else
                       guarded(DECODER_CHECK, decoder_check, decoder, synthetic_data(64, 32), cpus_per_trial, storage))
        return [decoder_row, guarded(PACKED_CHECK, packing_check, encoder, synthetic_data(8000, 400), cpus_per_trial,
                                     gpu_mb, storage)]
    finally:
        ray.shutdown()


def write_goemotions_release(directory: Path, data: EmotionData) -> Path:
    """`data` (synthetic_data's rows) as the GoEmotions release files a sweep reads with --data-dir: train.tsv,
    dev.tsv and test.tsv (`text<TAB>label ids<TAB>comment id`) and labels.txt (the 28 names in id order). Each cue
    label is written as its GoEmotions id, so the cue words carry the signal of those labels in a 28-label model."""
    goemotions_ids = [GOEMOTIONS_LABELS.index(name) for name in data.label_names]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "labels.txt").write_text("\n".join(GOEMOTIONS_LABELS) + "\n", encoding="utf-8")
    for filename, split in (("train.tsv", data.train), ("dev.tsv", data.validation), ("test.tsv", data.test)):
        lines = []
        for number, (text, row) in enumerate(zip(split.texts, split.labels)):
            label_ids = ",".join(str(goemotions_ids[label]) for label in np.flatnonzero(row))
            lines.append(f"{text}\t{label_ids}\t{filename.removesuffix('.tsv')}-{number}")
        (directory / filename).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def round_trip_verdict(sweep_dir: Path, export_dir: Path) -> tuple[str, str]:
    """(PASS or FAIL, why) for a multi-label sweep's best trial exported alone (analysis.export --single) at
    `export_dir`: the export's predictions of the sweep's test texts (analysis.predict), decided by its own
    decision.json, must give back every test score best_trials.json reports for that trial (REPORTED_TEST_SCORES),
    each within ROUND_TRIP_TOLERANCE; otherwise the table reports a model nobody can load. Reads sweep.json (the
    test rows) and best_trials.json from `sweep_dir`, and the trial's saved predictions where best_trials.json says
    they are. The note gives the largest score difference and counts the test rows the export decides otherwise
    than the trial did: a score moves only where a row's decision does."""
    from analysis.decision import decisions
    from analysis.predict import predict
    from analysis.trials import read_json
    from trainables.data import load_sweep_data
    from trainables.metrics import multilabel_report

    best = read_json(sweep_dir / "best_trials.json")[0]  # best first, the model export chooses by default
    test = load_sweep_data(read_json(sweep_dir / "sweep.json")).test
    rule, decision, probs = predict(export_dir, test.texts)
    recomputed = multilabel_report(probs, test.labels, rule["global_threshold"], decision.thresholds)
    with np.load(Path(best["trial_dir"]) / best["checkpoint"] / "predictions.npz") as saved:
        rows_decided_otherwise = int((decision.apply(probs) != decisions(dict(saved), "test")).any(axis=1).sum())
    differences = {key: abs(best[key] - recomputed[entry]) for key, entry in REPORTED_TEST_SCORES.items()}
    summary = (f"largest difference {max(differences.values()):.1e}; {rows_decided_otherwise} of {len(test)} test "
               f"rows decided otherwise than the trial did")
    moved = [f"{key} {best[key]:.4f} reported, {recomputed[REPORTED_TEST_SCORES[key]]:.4f} from the export"
             for key, difference in differences.items() if difference > ROUND_TRIP_TOLERANCE]
    if moved:
        return "FAIL", f"{best['model']}: {'; '.join(moved)}; {summary}"
    return "PASS", f"{best['model']}: its {len(differences)} test scores come back from the export ({summary})"


def round_trip_check(encoder: str, storage: Path) -> Check:
    """A smoke sweep of `encoder` (the --encoder flag as given) run as a user runs it, in its own process with its
    own Ray, on the synthetic rows as GoEmotions release files; its best trial exported alone and judged by
    round_trip_verdict."""
    from analysis.export import export

    train_rows, eval_rows = ROUND_TRIP_ROWS
    data_dir = write_goemotions_release(storage / "round-trip-data", synthetic_data(train_rows, eval_rows))
    command = [sys.executable, str(SWEEP_FILE), "--data-dir", str(data_dir), "--models", encoder, "--budget", "smoke",
               "--num-samples", "1", "--confirm-seeds", "0", "--train-rows", str(train_rows), "--val-rows",
               str(eval_rows), "--test-rows", str(eval_rows), "--storage", str(storage), "--name", "round-trip",
               "--no-dashboard", "--device", "gpu", "--max-failures", "0"]
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}  # this machine, as ray_checks
    if Path(encoder).expanduser().is_dir():
        env["HF_HUB_OFFLINE"] = "1"
    sweep = subprocess.run(command, capture_output=True, text=True, env=env)
    if sweep.returncode != 0:
        last = next((line.strip() for line in reversed(sweep.stderr.splitlines()) if line.strip()), "no stderr")
        why = f"the sweep exited {sweep.returncode}: {last}"
        return Check(ROUND_TRIP_CHECK, "FAIL", note=why.replace("|", "\\|"))  # a cell of the markdown table
    sweep_dir = storage / "round-trip"
    verdict, note = round_trip_verdict(sweep_dir, export(sweep_dir, single=True))
    return Check(ROUND_TRIP_CHECK, verdict, note=note)


def table(checks: list[Check]) -> str:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    rows = ["| check | result | peak GPU MiB | examples/s | note |", "|---|---|---:|---:|---|"]
    rows += [f"| {c.name} | {c.result} | {number(c.peak_gpu_mb)} | {number(c.examples_per_s)} | {c.note} |"
             for c in checks]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="minilm", help="alias or local model directory (default minilm)")
    parser.add_argument("--decoder", default="qwen3-0.6b",
                        help="alias or local model directory for the QLoRA check (default qwen3-0.6b)")
    parser.add_argument("--steps", type=positive(int), default=300, help="encoder training steps per precision")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
              f"nothing to check on CPUs: run it on a machine with an NVIDIA GPU")
        return 0

    import ray

    from trainables.device import autocast_dtype
    from trainables.hub import hub_reachable
    from trainables.models import ModelError, resolve_model

    hub_ok = hub_reachable()
    try:
        encoder = resolve_model(args.encoder, hub_ok)
    except ModelError as error:
        parser.error(f"--encoder {args.encoder}: {str(error).removeprefix(f'--models {args.encoder}: ')}")
    try:
        decoder, decoder_problem = resolve_model(args.decoder, hub_ok), None
    except ModelError as error:
        decoder, decoder_problem = None, str(error).removeprefix(f"--models {args.decoder}: ")

    device = torch.device("cuda", 0)
    properties = torch.cuda.get_device_properties(device)
    gpu_mb = properties.total_memory / 2**20
    trials_dtype = autocast_dtype(device)
    print(f"{properties.name}, compute capability {properties.major}.{properties.minor}, {gpu_mb:,.0f} MiB; "
          f"torch {torch.__version__} (CUDA {torch.version.cuda}), ray {ray.__version__}")
    print(f"encoder: {encoder.source}{f' ({encoder.note})' if encoder.note else ''}")
    print(f"decoder: {decoder.source if decoder else f'none ({decoder_problem})'}\n")

    checks = [guarded(encoder_check_name(dtype), encoder_precision_check, encoder.source, encoder.revision,
                      synthetic_data(2000, 200), device, dtype, args.steps, trials_dtype)
              for dtype in PRECISIONS]
    storage = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    checks += ray_checks(encoder, decoder, decoder_problem, gpu_mb, storage)
    checks.append(guarded(ROUND_TRIP_CHECK, round_trip_check, args.encoder, storage))  # after ray_checks' Ray is down
    print(table(checks))
    failed = [check.name for check in checks if check.result == "FAIL"]
    if failed:
        print(f"\nfailed: {', '.join(failed)}; the trials' logs and error.txt files are in {storage}")
        return 1
    shutil.rmtree(storage, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

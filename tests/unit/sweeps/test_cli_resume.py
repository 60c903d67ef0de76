"""`--resume` checks the experiment it is pointed at before anything starts: one line naming the file, field, line
or flag, exit code 2, nothing written. It continues the experiment where it is now (a copied or renamed one in its
new place), refuses another sweep file's experiment, a damaged sweep.json or journal, a flag it cannot change,
and an experiment name the filesystem cannot hold or a file already has.

Each check calls the sweep file's `main` in this process (`run_cli`, tests/unit/conftest.py) with --dry-run, so an
accepted resume prints its plan and returns; the experiment dir is one a stopped sweep leaves
(tests/helpers/experiments.py). test_cli_resume_fuzz.py mutates it further."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sweeps import emotion6, goemotions_raw, goemotions_simplified, qlora_goemotions, semeval_ec
from sweeps.cli import build_parser, resumed_args
from sweeps.studies import JOURNAL
from tests.helpers.experiments import stopped_goemotions_raw, write_experiment


def files(root: Path) -> dict:
    """Every file under root with its bytes, and every directory: what a refused resume must leave as it was."""
    return {path: path.read_bytes() if path.is_file() else None for path in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, goemotions_dir, tiny_bert) -> Path:
    return stopped_goemotions_raw(tmp_path_factory.mktemp("stopped"), goemotions_dir, tiny_bert)


@pytest.fixture
def experiment(stopped, tmp_path) -> Path:
    """A copy of the stopped experiment, in its own storage dir."""
    shutil.copytree(stopped, tmp_path / "out" / "exp")
    return tmp_path / "out" / "exp"


def resume(run_cli, experiment: Path, *extra: str, sweep=goemotions_raw):
    return run_cli(sweep, "--resume", "--storage", str(experiment.parent), "--name", experiment.name, "--dry-run",
                   *extra)


def refused(result) -> str:
    """The one error line of a refused resume, which printed no plan."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == "", result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    return line


def test_a_copied_and_renamed_experiment_resumes_in_its_new_place(run_cli, stopped, tmp_path):
    copy = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(stopped, copy)
    before = files(stopped.parent)
    result = resume(run_cli, copy)
    assert result.returncode == 0, result.stderr
    assert f"results in {copy}\n" in result.stdout and f"optuna-dashboard {copy / JOURNAL}\n" in result.stdout
    assert files(stopped.parent) == before  # the original is not touched


def test_a_restored_tuner_writes_the_journal_where_the_experiment_is_now(stopped, tmp_path):
    """Tune moves its own paths to the dir it restores from; the searcher and scheduler come back from tuner.pkl
    pointing at the original journal until build_tuner points them here. No Ray starts: Tuner.restore reads files."""
    import ray

    from sweeps.studies import Study
    from sweeps.tuning import build_tuner
    from tests.helpers.experiments import trainable

    copy = tmp_path / "renamed"
    shutil.copytree(stopped, copy)
    sweep = json.loads((copy / "sweep.json").read_text())
    studies = [Study(model["name"], {}, {}, num_samples=2, max_concurrent=1, cpus=1, gpus=0)
               for model in sweep["models"]]
    tuner = build_tuner(trainable, studies, copy, search="random", seed=0, scheduler="asha", max_epochs=1,
                        max_failures=2, time_budget_s=None, callbacks=[], resume=True, restart_errored=False,
                        verbose=True)
    internal = tuner._local_tuner
    assert internal._tune_config.search_alg.journal == copy / JOURNAL
    assert internal._tune_config.scheduler.journal == copy / JOURNAL
    assert (internal._run_config.storage_path, internal._run_config.name) == (str(tmp_path), "renamed")
    assert internal._run_config.verbose == 1 and not ray.is_initialized()


@pytest.mark.parametrize("sweep", [semeval_ec, goemotions_simplified, emotion6, qlora_goemotions])
def test_another_sweep_files_experiment_is_refused(run_cli, experiment, sweep):
    before = files(experiment)
    line = refused(resume(run_cli, experiment, sweep=sweep))
    assert line == (f"error: --resume: {experiment} is an experiment of sweeps/goemotions_raw.py on goemotions, not "
                    f"of sweeps/{sweep.EXPERIMENT.name}.py on {sweep.EXPERIMENT.dataset}; resume it with the sweep "
                    f"file that started it")
    assert files(experiment) == before


def cut(text: str) -> str:
    return text[:len(text) // 2]


def set_field(key: str, value):
    def change(text: str) -> str:
        sweep = json.loads(text)
        where, _, field = key.rpartition(".")
        (sweep[where] if where else sweep)[field] = value
        return json.dumps(sweep, indent=2)
    return change


@pytest.mark.parametrize("damage, expected", [
    (cut, ": not valid JSON ("),
    (lambda text: "", ":1: not valid JSON (Expecting value, column 1)"),
    (lambda text: "[]", ": args: missing; not a sweep's saved plan"),
    (set_field("args.num_samples", "many"), ": args.num_samples: 'many' is not a number"),
    (set_field("args.num_samples", 0), ": args.num_samples: '0' must be > 0"),
    (set_field("args.search", "bayes"), ": args.search: invalid choice: 'bayes'"),
    (set_field("args.scheduler", None), ": args.scheduler: null is not a value of --scheduler"),
    (set_field("args.models", "bert"), ': args.models: "bert" is not a value of --models'),
    (set_field("args.lr", True), ": args.lr: true is not a value of --lr"),
    (set_field("args.time_budget", "soon"), ": args.time_budget: 'soon' is not a duration like 90s, 30m or 2h"),
    (set_field("args.deterministic", "yes"), ': args.deterministic: "yes" is not a value of --deterministic (true or'),
    (set_field("models", [{"revision": None}]), ": models: not a list of models, each with its name"),
    (set_field("data_revision", 7), ": data_revision: 7 is not a hub commit"),
], ids=["cut", "empty", "a list", "count not a number", "count zero", "unknown choice", "choice null",
        "models not a list", "a number true", "duration", "a switch not true or false", "model without name",
        "data revision a number"])
def test_a_damaged_sweep_json_is_one_line_naming_it(run_cli, experiment, damage, expected):
    saved = experiment / "sweep.json"
    saved.write_text(damage(saved.read_text()))
    before = files(experiment)
    line = refused(resume(run_cli, experiment))
    assert line.startswith(f"error: {saved}") and expected in line, line
    assert files(experiment) == before


@pytest.mark.parametrize("line_number", [2, 4, -1])
def test_a_journal_line_broken_before_the_last_is_one_line_naming_it(run_cli, experiment, line_number):
    """Optuna skips a broken last line (a killed driver may leave one); one before others it cannot replay."""
    journal = experiment / JOURNAL
    lines = journal.read_text().splitlines(keepends=True)
    lines[line_number] = lines[line_number][:20] + "\n"
    journal.write_text("".join(lines))
    before = files(experiment)
    result = resume(run_cli, experiment)
    if line_number == -1:
        assert result.returncode == 0, result.stderr
        return
    assert refused(result).startswith(f"error: {journal}:{line_number + 1}: not valid JSON (")
    assert files(experiment) == before


def test_a_journal_operation_optuna_cannot_replay_is_one_line_naming_it(run_cli, experiment):
    journal = experiment / JOURNAL
    lines = journal.read_text().splitlines(keepends=True)
    lines[2] = json.dumps({**json.loads(lines[2]), "op_code": 99}) + "\n"
    journal.write_text("".join(lines))
    assert refused(resume(run_cli, experiment)) == (f"error: {journal}:3: an operation Optuna cannot replay "
                                                    f"(AssertionError: Should not reach.)")


@pytest.mark.parametrize("extra, flag, saved", [
    (["--models", "distilbert"], "--models", "{model}"),
    (["--time-budget", "1h"], "--time-budget", "not set"),
    (["--data-dir", "{data}-v2"], "--data-dir", "{data}"),
    (["--wandb", "offline"], "--wandb", "off"),
    (["--max-failures", "5"], "--max-failures", "2"),
    (["--search", "tpe"], "--search", "random"),
    (["--budget", "cpu"], "--budget", "smoke"),
    (["--seed", "1"], "--seed", "0"),
    (["--deterministic"], "--deterministic", "False"),
])
def test_a_flag_a_resume_cannot_change_is_refused_naming_it(run_cli, experiment, goemotions_dir, tiny_bert, extra,
                                                            flag, saved):
    before = files(experiment)
    line = refused(resume(run_cli, experiment, *[arg.format(data=goemotions_dir) for arg in extra]))
    assert line == (f"error: {flag}: --resume continues {experiment} with its saved {flag} "
                    f"({saved.format(model=tiny_bert, data=goemotions_dir)}); a resume may change only --address, "
                    f"--no-dashboard, --verbose, --dry-run, --restart-errored (a new --name starts a sweep with "
                    f"other settings)")
    assert files(experiment) == before


def test_flags_that_restate_the_saved_values_are_accepted(run_cli, experiment, goemotions_dir, tiny_bert):
    """The flags the sweep started with, given again beside --resume, change nothing."""
    result = resume(run_cli, experiment, "--data-dir", str(goemotions_dir), "--models", str(tiny_bert), "--budget",
                    "smoke", "--search", "random", "--seed", "0")
    assert result.returncode == 0, result.stderr


def test_a_deterministic_sweep_records_the_switch_and_its_resume_trains_deterministic_trials(tmp_path, goemotions_dir,
                                                                                             tiny_bert):
    """--deterministic is saved in sweep.json (its flags and the fixed config) and restored by --resume into the
    config of every trial the resumed plan starts."""
    from sweeps.cluster import local_cluster
    from sweeps.plan import make_plan
    from sweeps.run import studies_of

    experiment = write_experiment(goemotions_raw.EXPERIMENT, [
        "--data-dir", str(goemotions_dir), "--models", str(tiny_bert), "--budget", "smoke", "--storage",
        str(tmp_path), "--name", "exp", "--deterministic"])
    sweep = json.loads((experiment / "sweep.json").read_text())
    assert sweep["args"]["deterministic"] is True and sweep["fixed"]["deterministic"] is True
    argv = ["--resume", "--storage", str(tmp_path), "--name", "exp", "--deterministic"]
    args = resumed_args(goemotions_raw.EXPERIMENT, build_parser(goemotions_raw.EXPERIMENT).parse_args(argv), argv)
    plan, _ = make_plan(goemotions_raw.EXPERIMENT, args, local_cluster())
    assert [study.config["deterministic"] for study in studies_of(plan, goemotions_raw.EXPERIMENT)] == [True]


def test_a_resume_applies_the_flags_it_may_change(experiment):
    argv = ["--resume", "--storage", str(experiment.parent), "--name", experiment.name, "--verbose",
            "--restart-errored", "--address", "10.0.0.1:6379"]
    args = resumed_args(goemotions_raw.EXPERIMENT, build_parser(goemotions_raw.EXPERIMENT).parse_args(argv), argv)
    assert (args.verbose, args.restart_errored, args.address, args.no_dashboard) == (True, True, "10.0.0.1:6379", False)
    assert (args.search, args.budget, args.storage, args.name) == ("random", "smoke", str(experiment.parent), "exp")


@pytest.mark.parametrize("resuming", [False, True], ids=["new", "resume"])
@pytest.mark.parametrize("name, expected", [
    ("taken", "error: --name taken: {storage}/taken is a file, not an experiment directory; pick another --name"),
    ("é" * 128, "error: --name: 256 bytes, longer than the 255 a file name may have in {storage}"),
], ids=["a file's name", "256 bytes"])
def test_a_name_the_storage_cannot_hold_is_refused_before_the_plan(run_cli, tmp_path, goemotions_dir, tiny_bert,
                                                                   resuming, name, expected):
    storage = tmp_path / "out"
    storage.mkdir()
    (storage / "taken").write_text("notes\n")
    before = files(storage)
    result = run_cli(goemotions_raw, "--data-dir", str(goemotions_dir), "--models", str(tiny_bert), "--budget",
                     "smoke", "--storage", str(storage), "--name", name, *(["--resume"] if resuming else []))
    assert refused(result) == expected.format(storage=storage)
    assert files(storage) == before

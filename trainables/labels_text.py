"""Label sets as text for decoders: prompt templates, the target answer, and the parser back to a label set.

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

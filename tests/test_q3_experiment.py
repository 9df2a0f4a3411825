import importlib.util
import json

import numpy as np
import pytest

from experiments import q3_activity as q3

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(importlib.util.find_spec("seglearn") is None,
                    reason="seglearn is not installed: the quick run builds the default Q3 stand-in from it")
def test_quick_end_to_end(tmp_path):
    res = tmp_path / "results"
    assert q3.main(["--quick", "--data-dir", str(tmp_path / "data"), "--results-dir", str(res), "--no-progress"]) == 0
    out = res / "q3"
    m = json.loads((out / "metrics.json").read_text())
    names = m["data"]["class_names"]
    assert len(names) == 6
    assert m["data"]["validation"]["kind"] == "subject" and m["data"]["validation"]["subjects"]
    for model in ("rnn", "lstm", "gru", "baseline"):
        r = m[model]
        for key in ("test_accuracy", "train_accuracy", "confusion_test", "seconds_per_epoch", "epochs_run",
                    "learning_rate"):
            assert key in r, (model, key)
        cm = np.array(r["confusion_test"])
        assert cm.shape == (6, 6) and cm.sum() == m["data"]["n_test"]
        assert abs(np.trace(cm) / cm.sum() - r["test_accuracy"]) < 1e-9
        assert 0.0 <= r["train_accuracy"] <= 1.0 and r["epochs_run"] >= 1
        assert r["seconds_per_epoch"] > 0
        assert len(r["history"]["train_loss"]) == r["epochs_run"]
        png = (out / f"{model}_confusion.png").read_bytes()
        assert png[:8] == PNG and len(png) > 20000
    for model in ("rnn", "lstm", "gru"):
        assert m[model]["learning_rate"] == q3.LEARNING_RATES[model]
        assert (out / f"{model}_loss.png").read_bytes()[:8] == PNG
    # the baseline learns something even in the quick run; the cells at least run
    assert m["baseline"]["test_accuracy"] > 2 * m["chance_accuracy"]
    assert (out / "loss_all.png").read_bytes()[:8] == PNG
    table = (out / "comparison.md").read_text()
    assert "GRU" in table and "logistic baseline" in table


def test_validation_split_by_subject_and_random():
    rng = np.random.default_rng(0)
    subjects = np.repeat([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 30)
    tr, va, how = q3.validation_split(subjects, subjects.size, 0.1, rng)
    assert how["kind"] == "subject" and len(how["subjects"]) == 1
    assert va.size == 30 and not set(subjects[tr]) & set(subjects[va])
    tr, va, how = q3.validation_split(None, 200, 0.1, rng)
    assert how["kind"] == "random" and va.size == 20 and tr.size == 180
    assert not set(tr.tolist()) & set(va.tolist())


def test_confusion_and_flags():
    cm = q3.confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])
    np.testing.assert_allclose(q3.row_normalized(cm)[0], [0.5, 0.5, 0])
    assert q3.parse_models("gru, rnn") == ["gru", "rnn"]
    with pytest.raises(SystemExit, match="unknown model"):
        q3.parse_models("rnn,cnn")
    lrs = q3.parse_lrs("all=0.05,gru=0.2")
    assert lrs == {"rnn": 0.05, "lstm": 0.05, "gru": 0.2}
    with pytest.raises(SystemExit, match="--lr"):
        q3.parse_lrs("gru")

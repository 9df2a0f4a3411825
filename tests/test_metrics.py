"""Evaluation helpers: chunked predictions of one compiled shape, confusion matrices, mean ± std."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.engine import metrics


def test_chunked_pads_the_last_chunk_and_compiles_once():
    shapes = []

    def fn(params, x):
        shapes.append(x.shape)  # traced once per shape under jit
        return params * jnp.sum(x, axis=1)

    jitted = jax.jit(fn)
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    out = metrics.chunked(jitted, 2.0, x, chunk=4)
    np.testing.assert_allclose(out, 2.0 * x.sum(axis=1))
    assert shapes == [(4, 3)]  # 4 + 4 + 2 (padded to 4): one shape
    assert metrics.chunked(jitted, 1.0, x[:3], chunk=100).shape == (3,)  # chunk shrinks to the rows
    assert metrics.chunked(jitted, 1.0, x, chunk=4, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="no rows"):
        metrics.chunked(jitted, 1.0, x[:0])


def test_confusion_row_normalized_accuracy():
    cm = metrics.confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])
    np.testing.assert_allclose(metrics.row_normalized(cm)[0], [0.5, 0.5, 0])
    np.testing.assert_array_equal(metrics.row_normalized(np.zeros((2, 2)))[1], [0, 0])
    assert metrics.accuracy(cm) == pytest.approx(0.5)
    assert metrics.accuracy(np.zeros((2, 2))) == 0.0


def test_mean_std_is_the_sample_std():
    m = metrics.mean_std([0.5, 0.7, 0.9])
    assert m["mean"] == pytest.approx(0.7) and m["std"] == pytest.approx(0.2) and m["per_seed"] == [0.5, 0.7, 0.9]
    assert metrics.mean_std([0.3])["std"] == 0.0


def test_classification_summary():
    cms = {"train": np.array([[3, 1], [0, 4]]), "validation": np.eye(2, dtype=int), "test": np.array([[1, 1], [0, 2]])}
    s = metrics.classification_summary(cms)
    assert s["train_accuracy"] == pytest.approx(7 / 8) and s["val_accuracy"] == 1.0
    assert s["test_accuracy"] == pytest.approx(0.75) and s["confusion_test"] == [[1, 1], [0, 2]]
    assert s["test_recall_per_class"] == [0.5, 1.0]


def test_compare_over_seeds():
    from mp_jax.engine import metrics

    c = metrics.compare_over_seeds([0.9, 0.8, 0.85], [0.7, 0.72, 0.74])
    assert c["gap"] == pytest.approx(0.13) and c["spread"] == pytest.approx(0.05 + 0.02) and c["exceeds"]
    c = metrics.compare_over_seeds([0.9, 0.7], [0.8, 0.78])
    assert c["gap"] == pytest.approx(0.01) and not c["exceeds"]
    assert metrics.compare_over_seeds([0.5], [0.4]) == {"gap": pytest.approx(0.1), "spread": 0.0, "exceeds": True}

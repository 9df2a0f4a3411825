"""The training-set augmentation: random rotations and gains of tri-axial windows."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.engine import augment


@pytest.mark.slow
def test_rotation_matrices_are_rotations_and_match_a_known_one():
    key = jax.random.PRNGKey(0)
    axes = jax.random.normal(key, (50, 3))
    axes = axes / jnp.linalg.norm(axes, axis=1, keepdims=True)
    r = augment.rotation_matrices(axes, jax.random.normal(jax.random.PRNGKey(1), (50,)))
    np.testing.assert_allclose(jnp.einsum("nij,nkj->nik", r, r), np.broadcast_to(np.eye(3), (50, 3, 3)), atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.det(r), 1.0, atol=1e-5)
    np.testing.assert_allclose(jnp.einsum("nij,nj->ni", r, axes), axes, atol=1e-5)  # the axis stays put
    quarter = augment.rotation_matrices(jnp.array([[0.0, 0.0, 1.0]]), jnp.array([np.pi / 2]))[0]
    np.testing.assert_allclose(quarter, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-6)


def test_rotation_gain_turns_and_scales_each_window_in_sensor_units():
    rng = np.random.default_rng(0)
    mean, std = np.array([0.5, -1.0, 2.0]), np.array([2.0, 0.5, 1.5])
    u = rng.normal(size=(40, 7, 3))
    x = jnp.asarray((u - mean) / std, jnp.float32)
    y = jnp.arange(40)
    aug = augment.RotationGain(20.0, (0.9, 1.1), tuple(mean), tuple(std))
    x2, y2 = aug(jax.random.PRNGKey(3), (x, y))
    assert x2.shape == x.shape and x2.dtype == x.dtype
    np.testing.assert_array_equal(y2, y)
    u2 = np.asarray(x2) * std + mean
    ratio = np.linalg.norm(u2, axis=-1) / np.linalg.norm(u, axis=-1)  # one gain per window, in [0.9, 1.1]
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-4)
    assert np.all((ratio > 0.9 - 1e-5) & (ratio < 1.1 + 1e-5)) and ratio[:, 0].std() > 0.01
    # a different key gives a different transform, the same key the same
    np.testing.assert_array_equal(aug(jax.random.PRNGKey(3), (x, y))[0], x2)
    assert not np.allclose(aug(jax.random.PRNGKey(4), (x, y))[0], x2)
    # no rotation and unit gain: the identity
    same = augment.RotationGain(0.0, (1.0, 1.0), tuple(mean), tuple(std))(jax.random.PRNGKey(3), (x, y))[0]
    np.testing.assert_allclose(same, x, atol=1e-5)


def test_rotation_gain_refuses_what_it_cannot_rotate():
    with pytest.raises(ValueError, match="tri-axial"):
        augment.RotationGain()(jax.random.PRNGKey(0), (jnp.zeros((2, 5, 4)), jnp.zeros(2)))
    with pytest.raises(ValueError, match="gain"):
        augment.RotationGain(gain=(1.2, 1.1))

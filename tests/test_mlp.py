import jax
import pytest

from mp_jax.models import mlp
from mp_jax.testing import assert_grads_match


@pytest.mark.parametrize("n,d,h,c", [(1, 2, 3, 2), (16, 5, 8, 4), (33, 7, 32, 6)])
def test_mlp_gradients(n, d, h, c):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(n), 3)
    params = mlp.init_params(k1, d, h, c)
    params = params._replace(b_in=0.1 * jax.random.normal(k3, (h,)))
    batch = (jax.random.normal(k2, (n, d)), jax.random.randint(k3, (n,), 0, c))
    assert_grads_match(mlp.loss, mlp.loss_and_grad, params, batch)

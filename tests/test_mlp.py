"""BatchedMLP: construction, forward paths, round trips, argument checks."""
import pytest
import torch
from torch import nn

import compnet_ext
from compnet_ext.nn import BatchedMLP, matmul_forward

F64 = torch.float64


def _mlp(S=5, widths=(1, 4, 4, 4, 1), seed=0, dtype=F64):
    return BatchedMLP(S, widths, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_parameters_shapes_and_default_init_bounds():
    m = _mlp(S=7, widths=(1, 3, 5, 1))
    assert [tuple(W.shape) for W in m.weights] == [(7, 3, 1), (7, 5, 3), (7, 1, 5)]
    assert [tuple(b.shape) for b in m.biases] == [(7, 3), (7, 5), (7, 1)]
    assert all(isinstance(p, nn.Parameter) for p in m.parameters())
    assert len(list(m.parameters())) == 6
    for W, b in m.layers():
        bound = W.shape[2] ** -0.5
        assert W.abs().max() <= bound and b.abs().max() <= bound
        assert W.abs().max() > 0.5 * bound  # really drawn from the full range


def test_generator_makes_init_reproducible():
    a, b = _mlp(seed=3), _mlp(seed=3)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_matmul_forward_equals_sequentials():
    m = _mlp(S=4, widths=(1, 6, 3, 1))
    x = torch.rand(4, 33, dtype=F64)
    y = m(x, fused=False)
    for i in range(4):
        torch.testing.assert_close(y[i], m.to_sequential(i)(x[i, :, None])[:, 0], rtol=0,
                                   atol=1e-14)
    y_shared = m(x[0], fused=False)
    torch.testing.assert_close(y_shared, matmul_forward(x[0].expand(4, 33), m.layers()))


def test_to_sequential_round_trip():
    m = _mlp(S=3, widths=(1, 2, 7, 1))
    back = BatchedMLP.from_sequentials([m.to_sequential(i) for i in range(3)])
    assert back.widths == m.widths
    for p, q in zip(m.parameters(), back.parameters()):
        assert torch.equal(p, q)


def test_from_layers_of_encode_and_adam_step():
    peaks = torch.rand(4, 6, dtype=F64) * 0.8 + 0.1
    m = BatchedMLP.from_layers(compnet_ext.encode(peaks))
    assert m.widths == (1, 4, 4, 4, 4, 4, 1)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = torch.linspace(0, 1, 50, dtype=F64)
    before = [p.detach().clone() for p in m.parameters()]
    loss = ((m(x) - x**3) ** 2).mean()
    loss.backward()
    opt.step()
    assert any(not torch.equal(p, q) for p, q in zip(before, m.parameters()))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`widths`"):
        BatchedMLP(2, (2, 4, 1))
    with pytest.raises(ValueError, match="`widths`"):
        BatchedMLP(2, (1, 17, 1))
    with pytest.raises(ValueError, match="`widths`"):
        BatchedMLP(2, (1,) + (4,) * 65 + (1,))
    with pytest.raises(ValueError, match="`widths`"):
        BatchedMLP(2, (1, 0, 1))
    with pytest.raises(TypeError, match="`widths`"):
        BatchedMLP(2, (1, 4.0, 1))
    with pytest.raises(ValueError, match="`S`"):
        BatchedMLP(-1)
    with pytest.raises(ValueError, match="`init`"):
        BatchedMLP(2, init="xavier")
    m = _mlp(S=3)
    with pytest.raises(TypeError, match="`x`"):
        m([0.5])
    with pytest.raises(TypeError, match="`x`"):
        m(torch.rand(5, dtype=torch.float32))
    with pytest.raises(ValueError, match="`x`"):
        m(torch.rand(2, 5, dtype=F64))
    with pytest.raises(IndexError, match="`i`"):
        m.to_sequential(3)
    with pytest.raises(TypeError, match="`layers"):
        BatchedMLP.from_layers([(torch.zeros(2, 4, 1), torch.zeros(2, 4, dtype=F64))])
    with pytest.raises(ValueError, match=r"`layers\[1\]\[0\]`"):
        BatchedMLP.from_layers([(torch.zeros(2, 4, 1), torch.zeros(2, 4)),
                                (torch.zeros(2, 1, 3), torch.zeros(2, 1))])
    with pytest.raises(TypeError, match="`models"):
        BatchedMLP.from_sequentials([nn.Linear(1, 1), nn.Linear(1, 1)])

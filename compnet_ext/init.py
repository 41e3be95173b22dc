"""Initialisers for S batched networks, drawn on the CPU from a torch.Generator (so a seed gives the
same networks on every device), returned as layer lists ``[(W [S, out, in], b [S, out]), ...]``.

Widths are ``(1, width, ..., width, 1)`` with ``depth`` hidden layers.
"""
import torch

from .batched_mlp import BatchedMLP
from .checks import check_bounds


def mlp_widths(width, depth):
    """``(1, width, ..., width, 1)`` with ``depth`` hidden layers."""
    return (1,) + (width,) * depth + (1,)


def default_layers(S, widths, generator, dtype=torch.float32):
    """PyTorch's ``nn.Linear`` default (W and b uniform on +-1/sqrt(fan_in)), via BatchedMLP."""
    return [(W.detach(), b.detach())
            for W, b in BatchedMLP(S, widths, "default", generator=generator, dtype=dtype).layers()]


def raai_layers(S, widths, generator, dtype=torch.float32, anti_correlation=0.5):
    """RAAI: randomized asymmetric anti-correlated initialisation (Singh & Sreejith 2021).

    Implemented from our reading of the two papers it combines (not from a reference code):

    1. Anti-correlated Gaussian (Singh & Sreejith): each neuron's ``fan_in`` incoming weights are
       jointly Gaussian, ``w = sigma * (z - c * mean(z))`` with ``z ~ N(0, I)``; ``c`` is chosen so
       that two weights of a neuron have correlation ``-anti_correlation / (fan_in - 1)``
       (``anti_correlation = 1`` is the maximal, singular case where the weights sum to zero;
       we use 1/2). ``sigma`` is rescaled so every weight has variance ``sigma_w^2``.
    2. Randomized asymmetric step (RAI, Lu et al. 2019 "Dying ReLU and initialization"): per
       neuron, one entry of the augmented row ``(w_1 .. w_fan_in, b)``, chosen uniformly, is
       replaced by a draw from Beta(2, 1) (positive, mean 2/3), which makes the neuron active on
       a large part of its input and so lowers the chance that a whole layer dies.
       The bias otherwise starts at 0 (N(0, 0) in RAI's notation).

    ``sigma_w^2`` is He's ``2 / fan_in`` reduced by the Beta(2, 1) second moment (1/2) spread
    over the row, so the expected squared norm of the augmented row stays He's 2 -- a choice
    of ours in the spirit of RAI's second-moment matching.
    """
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        var = 1.5 / fan_in  # He 2/fan_in less the Beta entry's 1/2, spread over the row
        z = torch.randn(S, fan_out, fan_in, generator=generator, dtype=torch.float64)
        if fan_in > 1:
            rho = anti_correlation / (fan_in - 1)
            # (I - c J/n)^2 = I + (c^2 - 2c) J/n: off-diagonal/diagonal = -rho fixes c.
            t = -rho * fan_in / (1 + rho * (fan_in - 1))  # = (c^2 - 2c)
            c = 1 - (1 + t) ** 0.5
            z = z - c * z.mean(dim=2, keepdim=True)
            z = z / (1 + t / fan_in) ** 0.5  # unit variance per weight
        W = z * var**0.5
        b = torch.zeros(S, fan_out, dtype=torch.float64)
        aug = torch.cat([W, b[:, :, None]], dim=2)  # [S, out, in + 1]
        pick = torch.randint(0, fan_in + 1, (S, fan_out, 1), generator=generator)
        # Beta(2, 1) = sqrt(U) by inverse CDF; sampled through the generator for determinism.
        u = torch.rand(S, fan_out, 1, generator=generator, dtype=torch.float64)
        aug.scatter_(2, pick, u.sqrt())
        layers.append((aug[:, :, :-1].to(dtype).contiguous(), aug[:, :, -1].to(dtype).contiguous()))
    return layers


PEAK_RANGE = (0.25, 0.75)
"""Range of the uniform starting peaks (docs/hyperparameters.md)."""


def starting_peaks(S, depth, generator, dtype=torch.float32, low=PEAK_RANGE[0], high=PEAK_RANGE[1]):
    """Random starting peaks ``[S, depth + 1]``, i.i.d. uniform on ``[low, high]``.

    Kept away from 0 and 1 because the encoded weights include 1/a and 1/(a (1 - a)); the
    default range is justified in docs/hyperparameters.md.
    """
    check_bounds("peak range (low, high)", (low, high))
    return low + (high - low) * torch.rand(S, depth + 1, generator=generator, dtype=dtype)

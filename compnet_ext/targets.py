"""The one registry of named target curves, and checked evaluation of user targets.

The paper's four targets (MATH.md section 6: :data:`PAPER_TARGETS`, what ``compnet reproduce``
and ``compnet sweep`` train on) and the extra curves ``compnet plot fit`` can draw. Every convex
or concave target lives on [0, 1], is normalised so that f(0) = 0 and f(1) = 1, and comes with
the sign of the compositional network that fits it (-1 subtracts waves: convex targets; +1 adds
them: concave). The non-convex targets (:data:`NONCONVEX_TARGETS`, ``compnet reproduce
--nonconvex``) have sign 0 (a difference of one network of each sign, MATH.md section 7) and
their own natural ``domain``.
"""
import math
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Target:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    sign: int
    label: str  # how the paper's tables name it
    domain: tuple = (0.0, 1.0)  # where the target is fitted (sign 0 only: others live on [0, 1])

    def __call__(self, x):
        """The target's values at ``x``: a Target is itself the callable of a run's targets, so
        that its ``domain`` travels with it (:func:`select`)."""
        return self.fn(x)


TARGETS = {
    "x3": Target("x3", lambda x: x**3, -1, "x^3"),
    "x11": Target("x11", lambda x: x**11, -1, "x^11"),
    "sin": Target("sin", lambda x: torch.sin(math.pi * x / 2), +1, "sin(pi x / 2)"),
    "tanh3": Target("tanh3", lambda x: torch.tanh(3 * x) / math.tanh(3), +1, "tanh(3x) / tanh(3)"),
    # not in the paper: a gentler convex curve to draw fits against
    "x2": Target("x2", lambda x: x**2, -1, "x^2"),
    # Non-convex (sign 0, MATH.md section 7), each on its natural domain:
    # the later paper's example: one inflection, f(lo) = f(hi), so the linear term is needed;
    "cubic": Target("cubic", lambda x: x**3 - x, 0, "x^3 - x", (-1.0, 1.0)),
    # two full periods: three interior inflections and curvature far from the origin, which
    # default-initialised ReLU networks fit poorly (the breakpoints paper, section 4);
    "periodic": Target("periodic", torch.sin, 0, "sin(x)", (-2 * math.pi, 2 * math.pi)),
    # a localised feature: concave in the middle, convex in both tails (inflections at +-1/sqrt 2)
    "bump": Target("bump", lambda x: torch.exp(-x**2), 0, "exp(-x^2)", (-2.0, 2.0)),
}

PAPER_TARGETS = ("x3", "x11", "sin", "tanh3")
"""The targets of the paper's Tables 1-2, in its order."""

NONCONVEX_TARGETS = ("cubic", "periodic", "bump")
"""The non-convex targets of ``compnet reproduce --nonconvex`` (sign 0, each on its domain)."""


def get_target(name):
    """The named target; ValueError listing the known names otherwise."""
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown target {name!r}; known targets: {', '.join(TARGETS)}") from None


def label(name):
    """How the paper's tables name a target (its name when it is not registered)."""
    return TARGETS[name].label if name in TARGETS else name


def select(names):
    """``{name: (target, sign)}`` of the named targets: the form :func:`compnet_ext.train.run`
    takes. Each ``target`` is the :class:`Target` itself (callable on points), so a run without a
    ``domain`` setting fits it on its own domain (:func:`domain_of`)."""
    return {n: (get_target(n), get_target(n).sign) for n in names}


def domain_of(targets, domain=None):
    """The domain of a run on ``targets`` (``{name: (target, sign)}``): ``domain`` when given,
    else the one domain of its named targets (:class:`Target` objects carry theirs), else
    [0, 1]. ValueError naming `domain` when named targets of different domains share a run."""
    if domain is not None:
        return domain
    own = {tuple(t.domain) for t, _ in targets.values() if isinstance(t, Target)}
    if len(own) > 1:
        raise ValueError(f"the targets' domains differ ({', '.join(map(str, sorted(own)))}): "
                         f"run them separately or give a `domain` setting")
    return own.pop() if own else (0.0, 1.0)


def evaluate_target(target, x, name="target"):
    """Values ``[N]`` of ``target`` at the points ``x [N]``.

    ``target`` is a callable on a tensor of points (it gets ``x`` and must return ``N`` finite
    values) or a tensor / sequence of ``N`` values. Errors name the argument ``name``.
    """
    if callable(target) and not isinstance(target, torch.Tensor):
        try:
            y = target(x)
        except Exception as e:
            raise TypeError(f"`{name}` raised {type(e).__name__} when called on the points: {e}") from e
    else:
        y = target
    if not isinstance(y, torch.Tensor):
        try:
            y = torch.as_tensor(y, dtype=x.dtype)
        except Exception as e:
            raise TypeError(f"`{name}` must be a callable or a tensor of values, got "
                            f"{type(target).__name__}") from e
    if not (y.is_floating_point() or y.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"`{name}` values must be real numbers, got dtype {y.dtype}")
    y = y.to(device=x.device, dtype=x.dtype)
    if y.shape != x.shape:
        raise ValueError(f"`{name}` must give one value per point, shape {list(x.shape)}, "
                         f"got shape {list(y.shape)}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"`{name}` gave NaN or infinite values")
    return y

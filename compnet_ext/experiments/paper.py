"""The paper's numbers: Tables 1 and 2 of Milkert, Hyde & Laine (ICML 2025), n = 30 seeds.

PAPER[target][kind] = {"min": ..., "mean": ...}. Table 2's "sin(x)" is the quarter period
sin(pi x / 2) of section 4.1, and "tanh(3x)" is normalised as tanh(3x) / tanh(3).
"""

_ROWS = {  # kind: (min x3, min x11, mean x3, mean x11, min sin, min tanh3, mean sin, mean tanh3)
    "default": (2.11e-5, 2.19e-5, 7.20e-2, 2.82e-2, 4.50e-5, 5.75e-5, 1.15e-1, 1.96e-1),
    "raai": (2.14e-5, 4.40e-5, 3.97e-2, 4.12e-2, 3.59e-5, 1.09e-5, 3.63e-2, 2.31e-2),
    "no_pretraining": (7.63e-7, 1.86e-5, 3.89e-5, 3.56e-4, 1.96e-7, 1.07e-6, 1.93e-5, 8.38e-5),
    "not_enforced": (1.64e-7, 3.20e-6, 1.02e-5, 3.73e-5, 4.41e-8, 1.49e-7, 1.47e-5, 3.81e-4),
    "enforced": (7.86e-8, 8.86e-7, 5.27e-7, 7.87e-6, 5.06e-8, 6.82e-8, 2.21e-7, 8.42e-7),
}

KIND_LABELS = {
    "default": "Default Network",
    "raai": "RAAI Distribution",
    "no_pretraining": "No Pretraining",
    "not_enforced": "Differentiability Not Enforced",
    "enforced": "Differentiability Enforced",
}

PAPER = {
    t: {k: {"min": r[i], "mean": r[i + 2]} for k, r in _ROWS.items()}
    for t, i in (("x3", 0), ("x11", 1), ("sin", 4), ("tanh3", 5))
}

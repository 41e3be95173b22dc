"""Deprecated: moved to :mod:`compnet_ext.experiments.plots`, one module for every picture
(network neurons and fits, and the plots of a reproduction or a sweep). Removed next release."""
import warnings

from .experiments.plots import neuron_outputs, plot_fit, plot_neurons  # noqa: F401

warnings.warn("compnet_ext.plots is deprecated and will be removed in the next release; use "
              "compnet_ext.experiments.plots", DeprecationWarning, stacklevel=2)

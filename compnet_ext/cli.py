"""Deprecated: moved to :mod:`compnet_ext.experiments.cli` (the ``compnet`` command's entry point
is ``compnet_ext.experiments.cli:main``). Kept one release for scripts installed before."""
import warnings

from .experiments.cli import build_parser, main  # noqa: F401

warnings.warn("compnet_ext.cli is deprecated and will be removed in the next release; use "
              "compnet_ext.experiments.cli", DeprecationWarning, stacklevel=2)

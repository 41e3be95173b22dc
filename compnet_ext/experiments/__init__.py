"""The paper's experiments and the ``compnet`` command, built on the library (compnet_ext.*).

Layers, each importing only the ones below it:

- :mod:`.cli`: parses and checks the options, claims the output folder, runs a command;
- :mod:`.reproduce`, :mod:`.sweep`: the two experiment commands (:mod:`.sparse_reproduce`:
  ``reproduce --sparse``); :mod:`.report` (tables and
  result files), :mod:`.plots` (every picture), :mod:`.outdir` (the output folder);
- :mod:`.distributed`: the ranks under torchrun (one without it) and :func:`~.distributed.run_cells`,
  which trains an experiment's work cells (:mod:`.cells`: target x kind x depth x seed block,
  their shares and their resumable files);
- :mod:`.engine`: :func:`~.engine.run` and :func:`~.engine.compare`, every target x kind x seed
  in as few batched networks as possible;
- :mod:`.sparse`: the later version's sparse-data test, trained and measured on held-out points;
- :mod:`.stages`: the two training stages, each one function, fused or step by step;
- :mod:`.config`: :class:`~.config.Config` (one experiment's settings) and their checks;
  :mod:`.paper` (the paper's figures), :mod:`.progress` (progress bars).

The public Python face of the engine is :mod:`compnet_ext.train`.
"""

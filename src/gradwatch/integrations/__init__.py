"""Framework integrations: callbacks that record a framework's training loop with gradwatch.

* :mod:`gradwatch.integrations.lightning`: ``GradwatchCallback`` for PyTorch Lightning.
* :mod:`gradwatch.integrations.transformers`: ``GradwatchCallback`` for the Hugging Face
  ``Trainer``.

Each framework is imported by its own module only: importing this package imports none.
Plain ``accelerate`` needs no callback: ``gw.watch`` unwraps an ``AcceleratedOptimizer``.
"""

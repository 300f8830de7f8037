"""The figures of a trace, one module per family; import them from :mod:`gradwatch.report.plots`.

Each module holds one family's ``*Data`` dataclass, its ``*_data`` function (the exact arrays
drawn) and its ``plot_*`` function:

- :mod:`.gradient_flow`: a gradient metric along depth at a few moments of training.
- :mod:`.heatmap`: one metric as a layers x steps matrix.
- :mod:`.backward_gain`: ‖∂L/∂h‖ at each layer's output and where it falls most.
- :mod:`.activation_health`: saturated and dead-unit fractions per layer.
- :mod:`.activation_stats`: activation mean and spread per layer.
- :mod:`.recurrent_memory`: gradient reaching each input position; the memory horizon.
- :mod:`.loss`: a logged scalar with its moving average.
- :mod:`.comparison`: several runs' gradient flow and loss on one axis.
- :mod:`.theory_overlay`: a mean-field depth profile over the measured one.

``_common`` holds what they share (measured rows, step selection, log-axis values, axis
labels); the look (colours, sizes, titles, PNG rendering) is in :mod:`gradwatch.report._style`.
"""

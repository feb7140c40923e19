"""``wattwise report``: one self-contained HTML file with the fleet's power and energy,
the fitted power models, the recommended caps and the cooling zones.

The package's ``__init__`` imports nothing, so loading the command does not load
matplotlib; :func:`wattwise.optimizer.report.write.write_report` does the work.
"""

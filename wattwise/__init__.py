"""wattwise: GPU, host and cooling telemetry with energy-saving recommendations.

The distribution's components live in sub-packages: ``wattwise.collector``
(what can be read), ``wattwise.agent`` (when and where readings go) and
``wattwise.optimizer`` (what the readings mean).
"""

__version__ = "0.1.0"

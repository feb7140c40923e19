"""What the optimizer and the power-plan appliers on the nodes both assume.

The optimizer plans a budget to hold until every applier has taken its next plan,
and the evaluation applies a plan as late as an applier would: both need the
appliers' poll interval, which the agent owns. It lives here so that neither side
imports the other's internals.
"""

APPLIER_INTERVAL_S = 60.0
"""How often an applier asks the optimizer for its plan, unless ``--interval-s`` says."""

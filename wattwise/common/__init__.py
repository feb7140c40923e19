"""Infrastructure the agent and the optimizer both use.

``lineproto`` (the line-protocol encoder and parser), ``transport`` (the one
interface a telemetry store takes batches through), ``influx`` (InfluxDB over
HTTP), ``embedded`` (the local SQLite store) and ``secrets`` (passwords and
tokens from files or the environment), ``plan_contract`` (what the optimizer
assumes of the power-plan appliers) and ``command_group`` (how each group of
``wattwise`` sub-commands is built). Neither side imports the other's
internals: both import from here.
"""

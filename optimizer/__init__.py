"""What the readings mean: stores, models, recommenders, the evaluation and the HTTP API.

``store`` reads telemetry (InfluxDB, Prometheus, the embedded store), ``models`` fits
power, cap-response, thermal and cooling models, ``recommend`` turns them into caps,
setpoints, placements and power-budget plans, ``evaluation`` judges those on the twin,
``report`` writes the HTML report, and ``service`` serves them (API, scheduler,
webhooks, commands).
"""

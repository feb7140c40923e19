"""Grafana dashboards and alert rules for wattwise, and the code that checks and publishes them."""

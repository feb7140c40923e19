"""Evaluation against the fleet twin: replay a scenario, apply wattwise, the baselines and the
oracle to identical replicas of the twin, and judge each on the twin's hidden ground truth."""

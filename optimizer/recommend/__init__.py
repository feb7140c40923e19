"""The recommenders: power caps, cooling setpoints and job placement."""

"""The optimizer's models: power versus load, cap response, thermal, node power, workloads."""

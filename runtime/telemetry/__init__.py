"""Telemetry: the serving process's metrics and traces (beside the layers; imports only the kernel)."""

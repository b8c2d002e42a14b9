"""The time-manager domain: tasks, reminders and the rules that schedule and send them.

This package knows what a task is, when its reminder is due, which deliveries a
reminder makes, and how a delivery moves from scheduled to sent or failed. It
imports no web framework, stream processor, database driver or provider SDK:
the deployables (`tm_service`, `tm_streams`) and the adapters (`tm_adapters`)
depend on it, never the other way round.
"""

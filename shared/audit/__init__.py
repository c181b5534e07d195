"""Auditing the log: hash chains and signed checkpoints, timelines, KPIs, exports, rebuilt read models."""

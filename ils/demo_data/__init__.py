"""Data files the demo library is built from; see ils.demo and scripts/."""

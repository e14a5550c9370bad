"""Tests of the circulation core (`ils`)."""

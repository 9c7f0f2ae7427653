"""Benchmarks: measured figures for the issue targets, each printing one table from one run."""

"""Experiment presets, runnable as `learnscope run NAME`."""

"""Experiment presets: `learnscope run NAME`, or in parallel `learnscope sweep NAME`."""

"""The calibration set: verifiable preference pairs a judge must rank before it may decide pairs.

`build` makes the shipped `pairs.jsonl` (seeded, verified by construction); `evaluate` scores a
reward model or an LLM judge on it the RewardBench way (chosen strictly above rejected).
"""

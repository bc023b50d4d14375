"""The judges of the preferences stage: ground truth, verifier, reward model, LLM judge (see base.py)."""

"""The prompts stage: topics, questions, instruction-following and two-turn prompts."""

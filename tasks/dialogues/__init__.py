"""The dialogues stage: multi-turn SFT conversations grown from published prompts by role play."""

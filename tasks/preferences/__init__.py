"""The preferences stage: K scored responses per prompt, judges that pick (chosen, rejected), best-of-n."""

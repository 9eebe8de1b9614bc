"""The seed model the project ships: its scenario, its training data (scripted transcripts), its build,
and its evaluation and model card."""

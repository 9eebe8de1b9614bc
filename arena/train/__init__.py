"""Training agents from their own episodes: filtered behaviour cloning, policy gradient, SCoRe.

    arena train scenarios/train-refine-score.toml [--out DIR] [--resume]

Nothing here knows a game by name: any registered game, any role or several
roles sharing one model.
"""

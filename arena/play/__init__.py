"""Playing episodes: the episode record, one episode (rollout), many at once (batched), the store they
are appended to, self-play runs and their scenario, loading policies, and summaries of episodes."""

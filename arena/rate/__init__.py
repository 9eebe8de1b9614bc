"""Rating agents: tournaments (schedule, scenario, outcomes), Bradley-Terry and OpenSkill ratings with
intervals, and the leaderboard's outputs."""

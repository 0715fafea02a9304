"""`orchard-bench`: evaluation and leaderboard. Filled in by the leaderboard issue."""

"""What writes episodes to the log: the simulator, skills and policies, rollout workers, decisions."""

"""Reinforcement-learning agents for ZO sampling policies (papers/003), on stable-baselines3."""

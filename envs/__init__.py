"""Gymnasium environments that wrap one ZO task instance as an MDP (papers/003)."""

"""Perceiver-Actor-Critic (Springenberg et al., ICML 2024): config, networks, losses, learning."""

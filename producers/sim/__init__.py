"""The simulated block-stacking domain (MuJoCo): scene, env, skills, rewards, rendering (gl.py first)."""

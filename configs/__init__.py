"""Experiment configs: one Python file per experiment, each with ``get_config() -> dict``.

Installed as ``dynpnp_jax.configs``; ``python -m dynpnp_jax.eval --config configs/FILE.py`` runs
one, and ``--dataset NAME`` picks ``denoise_<name>.py`` / ``deblur_<name>.py`` by default.
"""

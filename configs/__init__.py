"""Experiment configs: one Python file per experiment, each with ``get_config() -> dict``.

Installed as ``dynpnp_jax.configs``; ``python -m dynpnp_jax.eval --config configs/FILE.py`` runs
one. Without ``--config`` the dataset and task pick one (``experiment.default_config_name``):
``denoise_<name>.py`` (``denoise_color.py`` for Set3C/Set5), ``deblur_gopro.py`` /
``deblur_folder.py`` for blur/sharp pairs (a ``folder`` with ``blur/`` is a deblurring set), and
``dpir.py`` for known degradations (``--task deblur|sr|inpaint`` on clean images).
"""

"""``python -m dynpnp_jax.restore``: the restore command (its code: :mod:`dynpnp_jax.restore_cli`).

``dynpnp_jax.restore`` is the solver FUNCTION; importing this file as a module would replace it
by the module, so an import fails and leaves the function in place."""
if __name__ == "__main__":
    from dynpnp_jax.restore_cli import main

    raise SystemExit(main())
raise ImportError("dynpnp_jax.restore is the function; the command's code is dynpnp_jax.restore_cli")

"""The command line's persistent compilation cache: compiled programs kept on disk between runs.

JAX compiles every program a command runs (most of a short command's time). With the cache
a later run of the same command loads them instead. Entries are keyed by the program, the
JAX and XLA versions and the device, so one folder serves any version safely. The folder is
`$CA_PLAST_CACHE_DIR`, else `$XDG_CACHE_HOME/ca_plast`, else `~/.cache/ca_plast`; it can be
deleted at any time.
"""

import os
from pathlib import Path

ENVIRONMENT = "CA_PLAST_CACHE_DIR"


def user_cache_folder() -> Path:
    """The user's cache folder for ca_plast: `$XDG_CACHE_HOME/ca_plast`, else `~/.cache/ca_plast`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ca_plast"


def default_folder() -> Path:
    """Where the command line keeps compiled programs unless told otherwise: `$CA_PLAST_CACHE_DIR`, else `user_cache_folder()`."""
    if os.environ.get(ENVIRONMENT):
        return Path(os.environ[ENVIRONMENT]).expanduser()
    return user_cache_folder()


def enable_compilation_cache(folder: Path) -> bool:
    """Keep every program JAX compiles from now on in `folder` (created if needed).

    Returns False, leaving JAX as it was, when the folder cannot be created or written: the
    command then compiles as without a cache.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            return False
    except OSError:
        return False
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    # JAX stores only programs that took a second or more to compile; a command's many
    # small programs add up, so keep them all.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return True

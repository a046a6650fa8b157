"""conda-store's solver and installer in QHub's conda-store image, on py-rattler.

conda is not on PyPI, so an image built from PyPI has no conda or mamba executable. conda-store 2025.x takes its
solve from a lock plugin (the `lock_plugins` hook) and installs the lock with `python -m conda_lock install`,
which calls a conda-compatible executable. This package provides both on py-rattler:

- `qhub_conda_store.lock`: the `rattler` lock plugin (conda packages solved by rattler against the spec's
  channels under conda-store's channel alias; pip packages resolved by pip to wheels only).
- `qhub_conda_store.installer`: the `conda` command the worker calls (`info --json`, `create --file <explicit>
  --prefix P`, `run --prefix P ...`, `env export --prefix P --json`, `--version`), which links the packages
  conda-store already downloaded into the prefix with rattler.
- `qhub_conda_store.buildpod`: each build's install step and conda-pack archive in a pod of its own, without
  secrets or network, writing only the build's namespace folder (the worker keeps the solve and the downloads).

The `conda` package next to this one serves conda's modules that conda-store imports (spec parsing, package
cache records) from the copy of conda vendored in conda-lock.
"""

"""Test-only `conda` package for the conda-store service test (tests/cluster/test_conda_store.py).

conda itself is not installable from PyPI, yet conda-store imports a few of its modules: conda.models.match_spec
to validate specs and conda.base.context for the platform name. This package serves them from the copy of conda
that conda-lock vendors (the real conda code), and adds conda.base.context with only `context.subdir`, taken
from the host. Builds still need the conda/mamba executables, which remain unavailable.
"""

import os

import conda_lock._vendor.conda as _vendored

globals().update({k: v for k, v in vars(_vendored).items() if not k.startswith("__")})
__path__ = [os.path.dirname(__file__), *_vendored.__path__]
__version__ = getattr(_vendored, "__version__", "0")

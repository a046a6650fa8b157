"""conda's modules for conda-store in QHub's conda-store image (conda itself is not on PyPI).

conda-store imports a few of conda's modules: conda.models.match_spec to validate specs, conda.base.context for
the platform name, the package-cache records its worker writes next to downloaded packages. This package serves
them from the copy of conda that conda-lock vendors (the real conda code), and adds conda.base.context with the
settings those modules read. The `conda` command conda-store runs is qhub_conda_store.installer (py-rattler).
"""

import os

import conda_lock._vendor.conda as _vendored

globals().update({k: v for k, v in vars(_vendored).items() if not k.startswith("__")})
__path__ = [os.path.dirname(__file__), *_vendored.__path__]
__version__ = getattr(_vendored, "__version__", "0")

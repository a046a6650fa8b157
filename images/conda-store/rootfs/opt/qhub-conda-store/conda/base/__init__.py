"""conda.base: the vendored modules (constants) plus context.py from this directory."""

import os

import conda_lock._vendor.conda.base as _vendored

globals().update({k: v for k, v in vars(_vendored).items() if not k.startswith("__")})
__path__ = [os.path.dirname(__file__), *_vendored.__path__]

"""The package index pip sections are resolved against, declared once for both sides of a build.

The lock plugin (`qhub_conda_store.lock`) gives pip this index and nothing else. The worker
(`qhub_conda_store.buildpod`) downloads a locked wheel only from the hosts that serve this index's files. That also
covers a lockfile a user uploads, which skips the lock plugin.
"""

INDEX_URL = "https://pypi.org/simple"
# PyPI's simple index links every file on this host; the worker downloads wheels from nowhere else, over https only
FILE_HOSTS = frozenset({"files.pythonhosted.org"})

"""qhub-ssh: the SSH and SFTP gateway of QHub.

A user logs in with their JupyterHub user name and a JupyterHub API token as password. A shell or command runs
in a terminal of the user's own JupyterLab server (started through the hub API if it is not running); SFTP is
served from the user's home directory on the shared volume, confined to it.
"""

__version__ = "0.1.0"

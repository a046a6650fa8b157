"""qhub-ssh: the SSH and SFTP gateway of QHub.

A user logs in with their JupyterHub user name and a JupyterHub API token (one that grants access to their own
server) as password. A shell, a command, a TCP forward or an SFTP session runs in a terminal of the user's own
JupyterLab server, as the user (the server is started through the hub API if it is not running). The gateway
mounts no volume and sends no credential but the user's own token to the user's server.
"""

__version__ = "0.1.0"

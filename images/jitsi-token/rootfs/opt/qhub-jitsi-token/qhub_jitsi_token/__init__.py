"""qhub-jitsi-token: a JupyterHub service that gives logged-in platform users a signed Jitsi room token.

Jitsi (prosody with token authentication) admits only JWTs signed with the app secret this service holds, so
rooms are open to JupyterHub users and nobody else.
"""

__version__ = "0.1.0"

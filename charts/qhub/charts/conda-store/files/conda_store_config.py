"""conda-store configuration for QHub (server and worker).

Policy comes from settings.json next to this file (rendered by the chart from its values); locations and
secrets come from the environment, set by the Deployments:

  CONDA_STORE_DATABASE_URL   SQLAlchemy URL of the database
  CONDA_STORE_REDIS_URL      Redis URL (build queue)
  CONDA_STORE_DIRECTORY      root of the built environments (/opt/conda-store on the shared volume)
  CONDA_STORE_ENVIRONMENTS   directory of the prebuilt environment files (watched by the worker)
  CONDA_STORE_TOKEN_SECRET   key that signs conda-store's own session tokens
  JUPYTERHUB_API_URL         hub API as seen from the pod, e.g. http://qhub-hub:8081/hub/api
  JUPYTERHUB_API_TOKEN       the conda-store service token (also its OAuth client secret)
  CONDA_STORE_PORT           port of the server (default 8080)
  CONDA_PKGS_DIRS            package download directory of the worker (on the store's volume, read by build pods)
  KUBERNETES_SERVICE_HOST/PORT and the ServiceAccount token   the API server, for build pods (buildPod.enabled)
  CONDA_STORE_S3_ACCESS_KEY / CONDA_STORE_S3_SECRET_KEY   artifact bucket credentials (storage minio or s3)
"""

import json
import os
import pathlib

import requests
from conda_store_server import CONDA_STORE_DIR, api, storage
from conda_store_server.server import schema as auth_schema
from conda_store_server.server.auth import JupyterHubOAuthAuthentication

HERE = pathlib.Path(os.environ.get("CONDA_STORE_CONFIG_DIR") or pathlib.Path(__file__).parent)
SETTINGS = json.loads((HERE / "settings.json").read_text())
PERMS = SETTINGS["permissions"]
HUB_API = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
STORE = os.environ.get("CONDA_STORE_DIRECTORY", "/opt/conda-store")


def role_bindings(user: dict) -> dict:
    """conda-store role bindings of a JupyterHub user model: own namespace admin, groups by role, global viewer."""
    groups = sorted(user.get("groups") or [])
    if user.get("admin") or set(groups) & set(PERMS["adminGroups"]):
        return {"*/*": ["admin"]}
    bindings = {f"{user['name']}/*": ["admin"], f"{PERMS['globalNamespace']}/*": ["viewer"]}
    for group in groups:
        role = PERMS["groupRoles"].get(group, PERMS["defaultGroupRole"])
        # conda-store calls the role "editor" in its settings but only accepts "developer" in role bindings
        bindings[f"{group}/*"] = ["developer" if role == "editor" else role]
    return bindings


class QHubHubAuthentication(JupyterHubOAuthAuthentication):
    """Login through JupyterHub; namespace rights from the user's JupyterHub groups."""

    def ensure_namespaces(self, user: dict) -> None:
        """The user's own namespace and those of their groups exist from the first login on."""
        with self.authentication_db() as db:
            for name in [user["name"], *(user.get("groups") or [])]:
                try:
                    api.ensure_namespace(db, name)
                except ValueError:  # a name conda-store does not accept as a namespace
                    self.log.warning("no conda-store namespace for %r: not a valid namespace name", name)

    async def authenticate(self, request):
        oauth_token = self._get_oauth_token(request)
        if oauth_token is None:
            return None
        response = requests.get(
            self.user_data_url, headers={"Authorization": f"Bearer {oauth_token}"}, timeout=30
        )
        response.raise_for_status()
        user = response.json()
        self.ensure_namespaces(user)
        return auth_schema.AuthenticationToken(
            primary_namespace=user["name"], role_bindings=role_bindings(user)
        )


# conda-store keeps small state (the Celery beat schedule) in its per-user data directory; it must exist.
CONDA_STORE_DIR.mkdir(parents=True, exist_ok=True)

# -- where things live --------------------------------------------------------------------------------------
c.CondaStore.database_url = os.environ["CONDA_STORE_DATABASE_URL"]
c.CondaStore.redis_url = os.environ["CONDA_STORE_REDIS_URL"]
c.CondaStore.store_directory = STORE
c.CondaStore.default_namespace = PERMS["globalNamespace"]
c.CondaStore.filesystem_namespace = PERMS["globalNamespace"]
c.CondaStore.default_uid = 1000
c.CondaStore.default_gid = 100
c.CondaStore.default_permissions = "755"

# -- builds -------------------------------------------------------------------------------------------------
build = SETTINGS["build"]
c.CondaStore.conda_included_packages = build["includedPackages"]
c.CondaStore.conda_default_channels = build["defaultChannels"]
c.CondaStore.conda_allowed_channels = build["allowedChannels"]
c.CondaStore.build_artifacts = build["artifacts"]
c.CondaStore.conda_max_solve_time = build["maxSolveSeconds"]
c.CondaStore.storage_threshold = build["storageThresholdBytes"]
c.CondaStore.conda_channel_alias = build["channelAlias"]
if build["lockBackend"] == "rattler":
    # QHub's image: solve with py-rattler (a lock plugin) and install through its conda-compatible command
    from qhub_conda_store import lock as rattler_lock

    rattler_lock.register()
    c.CondaStore.lock_backend = "rattler"
    c.CondaStore.conda_command = "conda"
    c.CondaStore.conda_flags = ""
else:  # the upstream conda-store image, which carries conda and mamba
    c.CondaStore.lock_backend = "conda-lock"
if SETTINGS["buildPod"]["enabled"]:
    # the install step and conda-pack archives run in a build pod per build, without secrets or network
    from qhub_conda_store import buildpod

    buildpod.register(SETTINGS["buildPod"])

# -- artifacts ----------------------------------------------------------------------------------------------
artifacts = SETTINGS["storage"]
if artifacts["type"] == "filesystem":
    c.CondaStore.storage_class = storage.LocalStorage
    c.LocalStorage.storage_path = os.path.join(STORE, ".artifacts")
    c.LocalStorage.storage_url = SETTINGS["urlPrefix"].rstrip("/") + "/storage"
else:
    c.CondaStore.storage_class = storage.S3Storage
    c.S3Storage.internal_endpoint = artifacts["endpoint"]
    c.S3Storage.external_endpoint = artifacts["endpoint"]
    c.S3Storage.internal_secure = artifacts["secure"]
    c.S3Storage.external_secure = artifacts["secure"]
    c.S3Storage.bucket_name = artifacts["bucket"]
    c.S3Storage.region = artifacts["region"]
    c.S3Storage.access_key = os.environ["CONDA_STORE_S3_ACCESS_KEY"]
    c.S3Storage.secret_key = os.environ["CONDA_STORE_S3_SECRET_KEY"]

# -- server -------------------------------------------------------------------------------------------------
c.CondaStoreServer.address = "0.0.0.0"
c.CondaStoreServer.port = int(os.environ.get("CONDA_STORE_PORT") or SETTINGS["port"])
c.CondaStoreServer.url_prefix = SETTINGS["urlPrefix"]
c.CondaStoreServer.behind_proxy = True
c.CondaStoreServer.enable_ui = True
c.CondaStoreServer.enable_api = True
c.CondaStoreServer.enable_registry = False
c.CondaStoreServer.enable_metrics = True
c.CondaStoreServer.standalone = False
c.CondaStoreServer.authentication_class = QHubHubAuthentication

hub = SETTINGS["hub"]
c.QHubHubAuthentication.jupyterhub_url = HUB_API.rsplit("/hub/api", 1)[0]
c.QHubHubAuthentication.authorize_url = hub["authorizeUrl"]
c.QHubHubAuthentication.access_token_url = HUB_API + "/oauth2/token"
c.QHubHubAuthentication.user_data_url = HUB_API + "/user"
c.QHubHubAuthentication.client_id = hub["clientId"]
c.QHubHubAuthentication.client_secret = os.environ["JUPYTERHUB_API_TOKEN"]
c.QHubHubAuthentication.oauth_callback_url = hub["oauthCallbackUrl"]
c.QHubHubAuthentication.access_scope = "identify"
c.AuthenticationBackend.secret = os.environ["CONDA_STORE_TOKEN_SECRET"]
c.RBACAuthorizationBackend.role_mappings_version = 2
c.RBACAuthorizationBackend.unauthenticated_role_bindings = {}
c.RBACAuthorizationBackend.authenticated_role_bindings = {f"{PERMS['globalNamespace']}/*": ["viewer"]}

# -- worker -------------------------------------------------------------------------------------------------
c.CondaStoreWorker.concurrency = SETTINGS["worker"]["concurrency"]
environments_dir = os.environ.get("CONDA_STORE_ENVIRONMENTS", "/opt/environments")
c.CondaStoreWorker.watch_paths = [environments_dir] if os.path.isdir(environments_dir) else []

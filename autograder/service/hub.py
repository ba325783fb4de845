"""Who is who when the service runs as a JupyterHub service: the student is their Hub user.

Browsers log in by OAuth with the Hub (``/hub/login`` here, then the Hub's ``/oauth_callback``); the
``state`` sent to the Hub is kept in the signed session cookie and must come back unchanged (no
login CSRF), and a PKCE verifier binds the code to this login. API calls from a student's notebook
carry their Hub API token (``JUPYTERHUB_API_TOKEN`` in the kernel), which the Hub identifies; a
token is accepted only with the scope to access this service (``access:services!service=NAME``).
The token exchange and the user look-ups are JupyterHub's own ``HubOAuth``.

Settings come from the environment the Hub gives a managed service (set them for an external one):
JUPYTERHUB_API_TOKEN, JUPYTERHUB_API_URL, JUPYTERHUB_CLIENT_ID, JUPYTERHUB_SERVICE_PREFIX,
JUPYTERHUB_OAUTH_CALLBACK_URL, JUPYTERHUB_SERVICE_NAME (or JUPYTERHUB_OAUTH_ACCESS_SCOPES) and
JUPYTERHUB_PUBLIC_URL when the Hub is reached over https.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from autograder.service.config import Config
from autograder.submissions import student_id

log = logging.getLogger(__name__)
NEEDED = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_SERVICE_PREFIX")


class HubConfigError(Exception):
    pass


def hub_student_id(name: str) -> str:
    """The Hub user's own name when it is already a safe id; else the safe form with a hash of the
    exact name, so two Hub users never share one (``alice.`` is not ``alice``)."""
    sid = student_id(name)
    return sid if sid == name else f"{sid}_{hashlib.sha256(name.encode()).hexdigest()[:10]}"


class HubAuth:
    hub = True

    def __init__(self, config: Config, env=os.environ):
        from jupyterhub.services.auth import HubOAuth
        missing = [name for name in NEEDED if not env.get(name)]
        if not (env.get("JUPYTERHUB_SERVICE_NAME") or env.get("JUPYTERHUB_OAUTH_ACCESS_SCOPES")):
            missing.append("JUPYTERHUB_SERVICE_NAME")
        if missing:
            raise HubConfigError(f"--hub needs the settings JupyterHub gives its services; missing: "
                                 f"{', '.join(missing)} (see README, 'As a JupyterHub service')")
        self.config = config
        self.oauth = HubOAuth(cache_max_age=60)  # reads the JUPYTERHUB_* settings
        self.prefix = self.oauth.base_url         # JUPYTERHUB_SERVICE_PREFIX, with a trailing slash
        self.secure_cookies = env.get("JUPYTERHUB_PUBLIC_URL", "").startswith("https:")
        callback = urlsplit(self.oauth.oauth_redirect_uri).path
        if not callback.startswith(self.prefix):
            raise HubConfigError(f"the OAuth callback {callback} is not under the service's prefix {self.prefix}")
        self.callback_path = "/" + callback[len(self.prefix):]

    # ------------------------------------------------------------------ API tokens
    def user_for_token(self, token: str) -> tuple[str, str] | None:
        """(student id, role) for a Hub token that may access this service; None for any other."""
        if not token:
            return None
        model = self.oauth.user_for_token(token)  # None when the Hub does not know the token
        return self._who(model)

    def _who(self, model) -> tuple[str, str] | None:
        from jupyterhub.services.auth import check_scopes
        if not model or model.get("kind", "user") != "user" or not model.get("name"):
            return None
        if not check_scopes(self.oauth.access_scopes, set(model.get("scopes", []))):
            return None
        name = model["name"]
        instructor = model.get("admin") or name in self.config.instructors
        return hub_student_id(name), "instructor" if instructor else "student"

    # ------------------------------------------------------------------ browser login (OAuth)
    def routes(self, service) -> list[Route]:
        async def login(request: Request) -> Response:
            state = secrets.token_urlsafe(24)
            verifier, challenge, method = self.oauth.generate_pkce_code_challenge()
            request.session["oauth"] = {"state": state, "verifier": verifier}
            query = urlencode({"client_id": self.oauth.oauth_client_id, "redirect_uri": self.oauth.oauth_redirect_uri,
                               "response_type": "code", "state": state,
                               "code_challenge": challenge, "code_challenge_method": method})
            return RedirectResponse(f"{self.oauth.oauth_authorization_url}?{query}", 302)

        async def callback(request: Request) -> Response:
            pending = request.session.pop("oauth", None) or {}
            sent, code = request.query_params.get("state", ""), request.query_params.get("code", "")
            if not pending.get("state") or not hmac.compare_digest(sent, pending["state"]):
                return service.page(request, "login.html", 403, error="The login expired or did not start "
                                                                      "here; please log in again.")
            if request.query_params.get("error") or not code:
                reason = request.query_params.get("error_description") or request.query_params.get("error") or "no code"
                return service.page(request, "login.html", 403, error=f"JupyterHub refused the login: {reason[:200]}")
            token = await self.oauth.token_for_code(code, code_verifier=pending["verifier"], sync=False)
            who = self._who(await self.oauth.user_for_token(token, use_cache=False, sync=False))
            if who is None:
                return service.page(request, "login.html", 403,
                                    error="Your Hub account may not use this service; ask your instructor.")
            return service.signed_in(request, who)

        return [Route("/hub/login", login), Route(self.callback_path, callback)]

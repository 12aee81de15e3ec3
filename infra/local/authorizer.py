"""API Gateway's JWT authorizer, and a local stand-in for the Cognito user pool that
issues the tokens it checks.

The template says which routes need a token, from which issuer and for which clients
(`Auth` of the HttpApi and of each event); this module checks a request exactly as an
HTTP API's JWT authorizer does, before the function is invoked:
- no token in the identity source (`Authorization`, "Bearer " optional) → 401;
- a token that is malformed, signed by a key the issuer does not publish, from another
  issuer, for a client not in the audience (`aud`, or `client_id` for access tokens),
  expired, not yet valid or issued in the future → 401;
- a valid token without one of the route's AuthorizationScopes (`scope` or `scp`) → 403.
The answers are API Gateway's: `{"message": "Unauthorized"}` / `{"message": "Forbidden"}`
with a `www-authenticate` header. A route that passes gets the token's claims in
`requestContext.authorizer.jwt`, as in AWS.

`LocalIssuer` plays the user pool: an RSA key made at start (so a token from another
run is foreign), RS256 tokens in Cognito's access-token shape, `POST /_local/token`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .http import Request, Response
from .template import ApiEvent, JwtAuthorizer, TemplateModel

MAX_TOKEN_SECONDS = 86400  # Cognito's longest access-token lifetime
DEFAULT_SUBJECT = "local-operator"


class Denied(Exception):
    """The authorizer refuses the request; `response` is what API Gateway answers."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        message = "Unauthorized" if status == 401 else "Forbidden"
        challenge = f'Bearer error="{error}", error_description="{description}"'
        self.response = Response.json(status, {"message": message}, [("www-authenticate", challenge)])


@dataclass(frozen=True)
class Verified:
    """What a passing request carries to the function."""

    claims: dict[str, Any]
    scopes: tuple[str, ...]

    def request_context(self) -> dict:
        """`requestContext.authorizer` of payload 2.0 (claims as strings, as API Gateway gives them)."""
        claims = {name: value if isinstance(value, str) else
                  f"[{' '.join(map(str, value))}]" if isinstance(value, list) else str(value)
                  for name, value in self.claims.items()}
        return {"jwt": {"claims": claims, "scopes": list(self.scopes) or None}}


class LocalIssuer:
    """Issues and verifies RS256 access tokens for every JWT authorizer of the template."""

    def __init__(self, model: TemplateModel):
        from cryptography.hazmat.primitives.asymmetric import rsa  # local stack only

        self.model = model
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        authorizers = model.authorizers()
        self.issuer = authorizers[0].issuer if authorizers else None
        if len({a.issuer for a in authorizers}) > 1:
            raise ValueError("the local issuer plays one user pool; the template's authorizers name several")

    # -- issuing (the user pool's token endpoint)
    def issue(self, subject: str = DEFAULT_SUBJECT, scopes: list[str] | None = None,
              expires_in: int = 3600, client_id: str | None = None, now: float | None = None) -> str:
        """An access token as Cognito shapes it (sub, client_id, scope, token_use, exp, ...)."""
        import jwt

        scopes = list(self.model.scopes) if scopes is None else scopes
        issued = int(now if now is not None else time.time())
        claims = {"sub": subject, "iss": self.issuer, "client_id": client_id or self.client_for(scopes),
                  "token_use": "access", "scope": " ".join(scopes), "auth_time": issued, "iat": issued,
                  "exp": issued + expires_in, "jti": str(uuid.uuid4()), "version": 2}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def client_for(self, scopes: list[str]) -> str:
        """The app client a request for these scopes comes from: the first whose allowed
        scopes cover them (a backend's member scopes, an operator's ops scopes), else the
        authorizers' first audience (the local endpoint is a developer's shortcut)."""
        for client in self.model.token_clients.values():
            if set(scopes) <= set(client.scopes):
                return client.client_id
        audiences = [a for authorizer in self.model.authorizers() for a in authorizer.audience]
        return audiences[0] if audiences else "local-client"

    def jwks(self) -> dict:
        """The public key set, as `<issuer>/.well-known/jwks.json` publishes it."""
        import jwt

        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    # -- verifying (API Gateway's JWT authorizer)
    def verify(self, request: Request, authorizer: JwtAuthorizer, route_scopes: tuple[str, ...]) -> Verified:
        """The request's verified claims; Denied (401/403) otherwise."""
        import jwt

        token = (request.header(authorizer.header) or "").strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if not token:
            raise Denied(401, "invalid_request", "no token in " + authorizer.identity_source)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Denied(401, "invalid_token", "the token is not a JWT") from None
        if header.get("kid") != self.kid or authorizer.issuer != self.issuer:
            raise Denied(401, "invalid_token", "the token's signing key is not the issuer's")
        try:
            claims = jwt.decode(token, self._key.public_key(), algorithms=["RS256"], issuer=authorizer.issuer,
                                options={"require": ["exp", "iat", "iss"], "verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise Denied(401, "invalid_token", "the token has expired") from None
        except jwt.PyJWTError as exc:
            raise Denied(401, "invalid_token", f"the token is not valid ({type(exc).__name__})") from None
        audience = claims.get("aud", claims.get("client_id"))
        audiences = audience if isinstance(audience, list) else [audience]
        if not set(audiences) & set(authorizer.audience):
            raise Denied(401, "invalid_token", "the token is for another client")
        scopes = _scopes(claims)
        if route_scopes and not set(scopes) & set(route_scopes):
            raise Denied(403, "insufficient_scope", "the token has none of the route's scopes")
        return Verified(claims, tuple(scopes))

    # -- POST /_local/token
    def handle_token(self, request: Request, params: dict[str, str]) -> Response:
        """`{"subject", "scopes", "expires_in", "client_id"}`, all optional → a Bearer token."""
        try:
            body = request.json() or {}
        except ValueError:
            return Response.json(400, {"error": "invalid_request", "message": "the body must be JSON"})
        problems = _token_request_problems(body, self.model.scopes)
        if problems:
            return Response.json(400, {"error": "invalid_request", "errors": problems})
        expires_in = int(body.get("expires_in", 3600))
        token = self.issue(body.get("subject", DEFAULT_SUBJECT), body.get("scopes"), expires_in,
                           body.get("client_id"))
        return Response.json(200, {"access_token": token, "token_type": "Bearer", "expires_in": expires_in})


def _scopes(claims: dict) -> list[str]:
    value = claims.get("scope", claims.get("scp", ""))
    return value.split() if isinstance(value, str) else [str(v) for v in value or ()]


def _token_request_problems(body: Any, known_scopes: tuple[str, ...]) -> list[dict]:
    if not isinstance(body, dict):
        return [{"field": "", "problem": "a JSON object"}]
    problems = []
    unknown = set(body) - {"subject", "scopes", "expires_in", "client_id"}
    if unknown:
        problems.append({"field": ", ".join(sorted(unknown)), "problem": "unknown field"})
    subject = body.get("subject", DEFAULT_SUBJECT)
    if not isinstance(subject, str) or not 1 <= len(subject) <= 128:
        problems.append({"field": "subject", "problem": "a string of 1-128 characters"})
    scopes = body.get("scopes", list(known_scopes))
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        problems.append({"field": "scopes", "problem": "a list of scope names"})
    elif set(scopes) - set(known_scopes) - {"openid", "email", "profile"}:
        problems.append({"field": "scopes", "problem": "invalid_scope: the user pool defines only "
                                                       + ", ".join(known_scopes)})
    expires_in = body.get("expires_in", 3600)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 1 <= expires_in <= MAX_TOKEN_SECONDS:
        problems.append({"field": "expires_in", "problem": f"whole seconds from 1 to {MAX_TOKEN_SECONDS}"})
    if "client_id" in body and not isinstance(body["client_id"], str):
        problems.append({"field": "client_id", "problem": "a string"})
    return problems


def authorize(issuer: LocalIssuer | None, request: Request, event: ApiEvent) -> Verified | None:
    """None for an open route; the verified claims for a protected one; Denied otherwise."""
    if event.authorizer is None:
        return None
    if issuer is None:
        raise Denied(401, "invalid_token", "no issuer")
    return issuer.verify(request, event.authorizer, event.scopes)

"""Bearer tokens: admin tokens, and user tokens bound to one ``user_id``.

Tokens come from the environment (``KERN_ADMIN_TOKENS``, ``KERN_USER_TOKENS``) or a JSON/TOML
file. Only their SHA-256 digests are kept, every presented token is compared against every
digest in constant time, and no token value ever appears in a message, a ``repr`` or a log.

Two steps, on purpose: the ASGI middleware ``BearerAuth`` *authenticates* every ``/v1``
request before FastAPI parses anything (no token → 401, even for a malformed body or an
unknown path), and the route dependencies *authorise* (the path's user must be the token's).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from kern.errors import ConfigError

__all__ = ["BearerAuth", "Principal", "TokenConfig"]

ADMIN_ENV = "KERN_ADMIN_TOKENS"
USER_ENV = "KERN_USER_TOKENS"
#: Shorter tokens are refused: a token is a password that cannot be rate-limited away.
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: an admin, or one user."""

    role: Literal["admin", "user"]
    user_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_act_as(self, user_id: str) -> bool:
        return self.is_admin or self.user_id == user_id


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """The accepted tokens, kept as digests. Build with ``TokenConfig.of``, ``from_env``,
    ``from_file`` or ``load``."""

    _admins: tuple[bytes, ...] = field(default=(), repr=False)
    _users: tuple[tuple[bytes, str], ...] = field(default=(), repr=False)

    @classmethod
    def of(
        cls, *, admin: list[str] | tuple[str, ...] = (), users: Mapping[str, str] | None = None
    ) -> TokenConfig:
        """``admin``: admin tokens; ``users``: token → user_id."""
        users = dict(users or {})
        for n, token in enumerate([*admin, *users], 1):
            _check_token(token, f"token #{n}")
        if len(set(admin)) != len(admin) or set(admin) & set(users):
            raise ConfigError("a token is listed twice (each token must be admin or one user's)")
        for user_id in users.values():
            if not isinstance(user_id, str) or not user_id.strip():
                raise ConfigError("every user token needs a non-empty user_id")
        return cls(
            tuple(_digest(t) for t in admin),
            tuple((_digest(t), user_id) for t, user_id in users.items()),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenConfig:
        """``KERN_ADMIN_TOKENS="tok1,tok2"``, ``KERN_USER_TOKENS="token:user_id,…"``."""
        env = os.environ if environ is None else environ
        admin = [t.strip() for t in env.get(ADMIN_ENV, "").split(",") if t.strip()]
        users: dict[str, str] = {}
        for n, pair in enumerate(env.get(USER_ENV, "").split(","), 1):
            if not pair.strip():
                continue
            token, sep, user_id = pair.strip().partition(":")
            if not sep:
                raise ConfigError(f"{USER_ENV}: entry #{n} is not 'token:user_id'")
            if token in users:
                raise ConfigError(f"{USER_ENV}: entry #{n} repeats a token")
            users[token] = user_id
        return cls.of(admin=admin, users=users)

    @classmethod
    def from_file(cls, path: str | Path) -> TokenConfig:
        """A JSON or TOML file: ``{"admin_tokens": [...], "user_tokens": {"token": "user_id"}}``
        (TOML: ``admin_tokens = [...]`` and a ``[user_tokens]`` table)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the tokens file {path}: {exc.strerror}") from None
        try:
            data: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            # The position only: the parser's message could quote a token.
            line = getattr(exc, "lineno", "?")
            raise ConfigError(f"the tokens file {path} is not valid (line {line})") from None
        if not isinstance(data, dict) or set(data) - {"admin_tokens", "user_tokens"}:
            raise ConfigError(
                f"the tokens file {path} must hold only 'admin_tokens' (a list) and "
                "'user_tokens' (a table of token = user_id)"
            )
        admin = data.get("admin_tokens", [])
        users = data.get("user_tokens", {})
        if not isinstance(admin, list) or not isinstance(users, dict):
            raise ConfigError(
                f"{path}: 'admin_tokens' must be a list and 'user_tokens' a table/object"
            )
        return cls.of(admin=admin, users=users)

    @classmethod
    def load(
        cls, tokens_file: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> TokenConfig:
        """The file when given, merged with the environment's tokens."""
        from_env = cls.from_env(environ)
        if tokens_file is None:
            return from_env
        from_file = cls.from_file(tokens_file)
        return cls(from_file._admins + from_env._admins, from_file._users + from_env._users)

    def __len__(self) -> int:
        return len(self._admins) + len(self._users)

    def __repr__(self) -> str:
        return f"TokenConfig(admin_tokens={len(self._admins)}, user_tokens={len(self._users)})"

    def authenticate(self, token: str) -> Principal | None:
        """The principal a token belongs to, or ``None``. Every digest is compared (no early
        exit), each in constant time, so timing tells nothing about which token nearly
        matched."""
        presented = _digest(token)
        found: Principal | None = None
        for digest in self._admins:
            if hmac.compare_digest(presented, digest):
                found = Principal("admin")
        for digest, user_id in self._users:
            if hmac.compare_digest(presented, digest):
                found = Principal("user", user_id)
        return found


def _check_token(token: object, what: str) -> None:
    if not isinstance(token, str):
        raise ConfigError(f"{what} is not a string")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"{what} is shorter than {MIN_TOKEN_LENGTH} characters")
    if any(c.isspace() or c in ",:" for c in token) or not token.isprintable():
        raise ConfigError(f"{what} contains whitespace, ',' or ':' or unprintable characters")


# --------------------------------------------------------------------------- authentication


class BearerAuth:
    """ASGI middleware: requests under ``prefix`` need a known bearer token (else 401)."""

    def __init__(self, app: ASGIApp, *, tokens: TokenConfig, prefix: str = "/v1") -> None:
        self.app = app
        self.tokens = tokens
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return
        principal = None
        token = _bearer(scope)
        if token is not None:
            principal = self.tokens.authenticate(token)
        if principal is None:
            detail = "missing bearer token" if token is None else "unknown bearer token"
            body = json.dumps({"detail": detail, "error": "Unauthorized"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="kern"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text: str = value.decode("latin-1")
            scheme, _, credentials = text.partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None


# --------------------------------------------------------------------------- authorisation

# Declared so the OpenAPI document shows the scheme; the middleware has already checked it.
_bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An admin token, or a user token bound to one user_id.",
)


def current_principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):  # only if mounted without BearerAuth
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return principal


Caller = Annotated[Principal, Depends(current_principal)]


def acting_user(user_id: str, principal: Caller) -> Principal:
    """The path's ``user_id`` must be the token's user (admins act as anyone)."""
    if not principal.may_act_as(user_id):
        raise HTTPException(403, "this token is bound to another user")
    return principal


def admin(principal: Caller) -> Principal:
    if not principal.is_admin:
        raise HTTPException(403, "this endpoint needs an admin token")
    return principal


ForUser = Annotated[Principal, Depends(acting_user)]
Admin = Annotated[Principal, Depends(admin)]

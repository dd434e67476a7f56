"""All JWT work goes through here: a small wrapper around python-jose.

* ES256 only, with ``kid`` in the header; the accepted algorithm list is fixed in code
  and never read from the token (``alg: none`` and HS256-signed-with-the-public-key
  tokens are refused before any key is looked up).
* ``iss``, ``aud``, ``exp``, ``nbf``, ``iat`` and ``jti`` are required and checked,
  with at most 60 s of leeway.
* Tokens are never logged; callers log the ``jti`` only.

``JwtService`` satisfies the ``TokenSigner`` protocols that ``records`` and
``device_policy`` declare, so those libraries issue and verify their tokens without
importing the server.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

from server.db import utcnow
from server.errors import InvalidToken
from server.security.keys import KeyRing

ALGORITHM = "ES256"
_RESERVED = frozenset({"iss", "aud", "exp", "nbf", "iat", "jti", "sub"})
_MAX_TOKEN_BYTES = 8192


class TokenExpired(InvalidToken):
    code, title = "token_expired", "The token has expired"


class WrongAudience(InvalidToken):
    code, title = "wrong_audience", "The token is not meant for this service"


def new_jti() -> str:
    """A fresh random token id (128 bits)."""
    return secrets.token_urlsafe(16)


class JwtService:
    """Issue and verify ES256 JWTs with the server's key ring."""

    def __init__(self, *, keys: KeyRing, issuer: str, leeway_s: int = 30) -> None:
        if not 0 <= leeway_s <= 60:
            raise ValueError("JWT leeway must be between 0 and 60 seconds")
        self._keys = keys
        self._issuer = issuer
        self._leeway_s = leeway_s

    @property
    def issuer(self) -> str:
        """The ``iss`` every token carries."""
        return self._issuer

    def issue(
        self,
        *,
        subject: str,
        audience: str,
        ttl: timedelta,
        claims: Mapping[str, Any] | None = None,
        not_before: Any = None,
    ) -> str:
        """Sign a token for ``audience`` living ``ttl``; extra ``claims`` cannot override reserved ones."""
        extra = dict(claims or {})
        clash = _RESERVED & extra.keys() - {"jti"}
        if clash:
            raise ValueError(f"reserved claims cannot be overridden: {sorted(clash)}")
        if ttl <= timedelta(0):
            raise ValueError("a token must live a positive time")
        now = utcnow()
        nbf = not_before or now
        payload: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "aud": audience,
            "iat": int(now.timestamp()),
            "nbf": int(nbf.timestamp()),
            "exp": int((nbf + ttl).timestamp()) if not_before else int((now + ttl).timestamp()),
            "jti": extra.pop("jti", None) or new_jti(),
            **extra,
        }
        key = self._keys.signer()
        assert key.private_pem is not None  # noqa: S101 - signer() only returns keys with a private half
        return jwt.encode(payload, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid})

    def verify(self, token: str, *, audience: str) -> dict[str, Any]:
        """Check signature, algorithm, issuer, audience and times; return the claims."""
        if not token or len(token) > _MAX_TOKEN_BYTES:
            raise InvalidToken("The token is missing or too large")
        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise InvalidToken("The token is malformed") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("The token's algorithm is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The token names no signing key")
        key = self._keys.verifier(kid)
        if key is None:
            raise InvalidToken("The token was signed by an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_pem,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=self._issuer,
                options={
                    "require_aud": True,
                    "require_iat": True,
                    "require_exp": True,
                    "require_nbf": True,
                    "require_iss": True,
                    "require_sub": True,
                    "require_jti": True,
                    "leeway": self._leeway_s,
                },
            )
        except ExpiredSignatureError as exc:
            raise TokenExpired() from exc
        except JWTClaimsError as exc:
            if "audience" in str(exc).lower():
                raise WrongAudience() from exc
            raise InvalidToken("The token's claims are not valid") from exc
        except JWTError as exc:
            raise InvalidToken("The token's signature or claims are not valid") from exc
        iat = claims.get("iat")
        if not isinstance(iat, int) or iat > utcnow().timestamp() + self._leeway_s:
            raise InvalidToken("The token was issued in the future")
        if not isinstance(claims.get("jti"), str):
            raise InvalidToken("The token has no usable id")
        return claims

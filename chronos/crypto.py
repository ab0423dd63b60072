"""Encryption at rest of webhook secrets (``CHRONOS_SECRET_KEY``, Fernet).

The store keeps a job's spec as JSON. With a key, each secret value in it (auth
``token``/``password``/``api_key``, the values of secret headers, the signing secrets and notification URLs, the same set the
API redacts) is replaced by ``{"fernet": "<token>"}`` on write and decrypted on read.
A JSON object can never be a real secret (they are strings), so a job written without
a key, or before encryption was turned on, reads back as it is.

Keys are urlsafe base64 Fernet keys:
``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``.
Several keys may be given comma-separated: the first encrypts, all of them decrypt,
which lets a server keep running while ``chronos rotate-key`` re-encrypts the jobs.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from chronos.errors import Unavailable
from chronos.models import is_secret_header

_MARK = "fernet"
_AUTH_SECRETS = ("token", "password", "api_key")


class SecretKeyError(Unavailable):
    """The secret key is missing, malformed or not the one the secrets were encrypted with."""


def _fernet(keys: Iterable[str]) -> Any:
    from cryptography.fernet import Fernet, MultiFernet

    fernets = []
    for key in keys:
        try:
            fernets.append(Fernet(key.strip().encode()))
        except (ValueError, TypeError):
            raise SecretKeyError(
                "CHRONOS_SECRET_KEY is not a valid Fernet key: it must be 32 url-safe base64-encoded bytes; "
                "generate one with `python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"`"
            ) from None
    return MultiFernet(fernets)


def split_keys(value: Optional[str]) -> list[str]:
    return [k.strip() for k in (value or "").split(",") if k.strip()]


class SecretBox:
    """Encrypts and decrypts the secret values of a stored job spec (a JSON dict)."""

    def __init__(self, keys: "str | Iterable[str] | None"):
        self.keys = split_keys(keys) if isinstance(keys, str) or keys is None else [k for k in keys if k]
        self._fernet = _fernet(self.keys) if self.keys else None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``spec`` with every secret encrypted (unchanged without a key)."""
        if self._fernet is None:
            return spec
        return _map_secrets(spec, self._encrypt)

    def open(self, spec: dict[str, Any], *, job: str = "?") -> dict[str, Any]:
        """A copy of ``spec`` with every encrypted secret decrypted."""

        def decrypt(value: Any) -> Any:
            if not (isinstance(value, dict) and _MARK in value):
                return value  # written without a key: plain text
            if self._fernet is None:
                raise SecretKeyError(
                    f'the webhook secrets of job "{job}" are encrypted but no key is set: '
                    "start the server with the CHRONOS_SECRET_KEY they were written with"
                )
            from cryptography.fernet import InvalidToken

            try:
                return self._fernet.decrypt(value[_MARK].encode()).decode("utf-8")
            except (InvalidToken, ValueError, TypeError):
                raise SecretKeyError(
                    f'cannot decrypt the webhook secrets of job "{job}": CHRONOS_SECRET_KEY is not the key '
                    "they were encrypted with (set the old key, or give both as NEW,OLD while `chronos rotate-key` runs)"
                ) from None

        return _map_secrets(spec, decrypt)

    def _encrypt(self, value: Any) -> Any:
        if not isinstance(value, str):  # already sealed
            return value
        assert self._fernet is not None, "sealing needs a key"
        return {_MARK: self._fernet.encrypt(value.encode("utf-8")).decode("ascii")}


def _map_secrets(spec: dict[str, Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
    targets = spec.get("notify")
    if isinstance(targets, list):  # a notification URL is a credential (Slack's path is its key)
        spec = {**spec, "notify": [{**t, "url": fn(t["url"])} if isinstance(t, dict) and "url" in t else t for t in targets]}
    webhook = spec.get("webhook")
    if not isinstance(webhook, dict):
        return spec
    # Copies of just the dicts that change (a deep copy of every spec was half the
    # cost of loading 10,000 jobs at start).
    webhook = dict(webhook)
    headers = webhook.get("headers")
    if isinstance(headers, dict):
        webhook["headers"] = {name: fn(value) if is_secret_header(name) else value for name, value in headers.items()}
    auth = webhook.get("auth")
    if isinstance(auth, dict):
        webhook["auth"] = {key: fn(value) if key in _AUTH_SECRETS else value for key, value in auth.items()}
    signing = webhook.get("signing_secret")
    if signing is not None:
        webhook["signing_secret"] = [fn(s) for s in signing] if isinstance(signing, list) else fn(signing)
    return {**spec, "webhook": webhook}


"""The only door into the C core (``frappe_mpesa._daraja``).

Everything here is implemented in C: the Daraja transport (libcurl), the OAuth token
cache and the credentials (OpenSSL). This module re-exports it with types; Frappe code
imports ``frappe_mpesa.daraja`` and never ``_daraja``.
"""

from __future__ import annotations

from typing import Protocol

from frappe_mpesa._daraja import (
	APIError,
	AuthError,
	Client,
	DarajaError,
	TimeoutError,
	TLSError,
	TransportError,
	ValidationError,
	ack,
	c2b_accept,
	c2b_reject,
	certificate_info,
	libcurl_version,
	libcurl_wipes_freed_memory,
	new_callback_secret,
	normalize_phone,
	openssl_version,
	parse_callback,
	security_credential,
	stk_password,
	timestamp,
	verify_callback,
)

__all__ = [
	"APIError",
	"AuthError",
	"Client",
	"DarajaError",
	"TLSError",
	"TimeoutError",
	"TokenStore",
	"TransportError",
	"ValidationError",
	"ack",
	"c2b_accept",
	"c2b_reject",
	"certificate_info",
	"libcurl_version",
	"libcurl_wipes_freed_memory",
	"new_callback_secret",
	"normalize_phone",
	"openssl_version",
	"parse_callback",
	"security_credential",
	"stk_password",
	"timestamp",
	"verify_callback",
]


class TokenStore(Protocol):
	"""Where a Client shares its OAuth token with other processes (e.g. Mpesa Settings).

	``load`` is asked before any token request goes out; ``store`` is told about every
	new token. ``expires_at`` is a Unix time in seconds.

	Both count against the call's one deadline. ``timeout`` is the seconds the call has
	left; a store should return by then (a lock wait bounded by it, say). It is passed only
	to methods that accept a ``timeout`` keyword (or ``**kwargs``): ``load()`` and
	``store(token, expires_at)`` without one are still called as before, but an answer after
	the deadline ends the call with TimeoutError all the same. ``store`` is not called at all
	once no time is left.
	"""

	def load(self, *, timeout: float | None = None) -> tuple[str, float] | None: ...

	def store(self, token: str, expires_at: float, *, timeout: float | None = None) -> None: ...

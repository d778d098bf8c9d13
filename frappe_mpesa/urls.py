"""Callback URLs: built from the configured HTTPS site address, never from a request's Host.

Plain Python (no Frappe import). Daraja refuses a callback URL containing certain words in any
case, and this app's own name contains one of them, so callbacks are served under neutral
whitelisted-method aliases (see ``hooks.override_whitelisted_methods``).
"""

from urllib.parse import urlencode, urlsplit

# Daraja rejects a CallBackURL/ResultURL containing any of these, whatever the case.
BANNED_WORDS = ("mpesa", "m-pesa", "safaricom", "exe", "exec", "cmd", "sql", "query")

# Callback kind -> the neutral method alias it is served at (/api/method/<alias>).
CALLBACK_ALIASES = {
	"stk": "daraja_stk",
	"c2b_validation": "daraja_c2b_validation",
	"c2b_confirmation": "daraja_c2b_confirmation",
	"result": "daraja_result",
	"timeout": "daraja_timeout",
	"pull": "daraja_pull",
}

# Query parameters: which settings record (an opaque id) and its secret.
HOOK_PARAM = "h"
SECRET_PARAM = "s"


def banned_word(text):
	"""The first word Daraja would refuse in ``text``, or None."""
	lowered = (text or "").lower()
	return next((word for word in BANNED_WORDS if word in lowered), None)


def check_base_url(url):
	"""Normalise the site's public base URL; ValueError with a message a person can act on."""
	url = (url or "").strip().rstrip("/")
	parts = urlsplit(url)
	if parts.scheme != "https" or not parts.hostname:
		raise ValueError("The callback base URL must start with https:// and name a host")
	if parts.query or parts.fragment or parts.username or parts.password:
		raise ValueError("The callback base URL must not carry a query, fragment or credentials")
	word = banned_word(url)
	if word:
		raise ValueError(
			f"Daraja refuses callback URLs containing '{word}'; use a host name (or a path) without it"
		)
	return url


def callback_url(base_url, kind, hook_id, secret):
	"""The URL Daraja posts ``kind`` callbacks to; ValueError if Daraja would refuse it."""
	if kind not in CALLBACK_ALIASES:
		raise ValueError(f"unknown callback kind {kind!r}")
	base = check_base_url(base_url)
	url = f"{base}/api/method/{CALLBACK_ALIASES[kind]}?" + urlencode(
		{HOOK_PARAM: hook_id, SECRET_PARAM: secret}
	)
	word = banned_word(url)
	if word:
		# Only the random parts can get here; callers draw a new secret (see safe_secret).
		raise ValueError(f"the callback URL would contain '{word}'")
	return url


def safe_secret(new_secret):
	"""A secret from ``new_secret()`` that puts no banned word into a URL.

	base64url text can spell 'sql' or 'exe' by chance (about 1 in 200 secrets), so draw again.
	"""
	while True:
		secret = new_secret()
		if banned_word(secret) is None:
			return secret

"""Mpesa Settings at runtime: one cached daraja.Client per settings record, the OAuth token shared
by every process of the site, the Security Credential, callback URLs, and Daraja's errors turned
into messages a person can act on."""

import hashlib
import json
import secrets
import threading
import time

import frappe
from frappe import _
from frappe.utils.password import decrypt, encrypt, get_decrypted_password, set_encrypted_password

from frappe_mpesa import daraja, urls

SETTINGS = "Mpesa Settings"
CERTIFICATE = "Mpesa Public Key Certificate"
# A token is only handed out with at least this much life left (the core renews 60 s early too).
TOKEN_MARGIN = 60
CLIENT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0
# How long one process may hold the token lock: one token request and its timeouts.
LOCK_SECONDS = CLIENT_TIMEOUT + CONNECT_TIMEOUT + 5
WAIT_STEP = 0.05

# (site, settings name) -> (fingerprint of what the client was made from, client). One client per
# record per process keeps the core's connection pool and token cache warm across requests.
_clients = {}


def require_roles(roles):
	"""Raise PermissionError unless the session user has one of ``roles``.

	frappe.only_for is not used: it lets everything through while tests run, and these checks are
	exactly what the tests must exercise.
	"""
	if not set(roles) & set(frappe.get_roles()):
		frappe.throw(
			_("Only {0} may do this").format(", ".join(_(role) for role in roles)), frappe.PermissionError
		)


def get_settings(name):
	"""The enabled settings record, or a clear error."""
	if not name or not frappe.db.exists(SETTINGS, name):
		frappe.throw(
			_("Mpesa Settings {0} not found").format(frappe.bold(name or "")), frappe.DoesNotExistError
		)
	settings = frappe.get_doc(SETTINGS, name)
	if not settings.enabled:
		frappe.throw(_("Mpesa Settings {0} is disabled").format(frappe.bold(name)))
	return settings


def daraja_target(settings):
	"""Client keyword arguments choosing the host. Production always talks to Safaricom; a Sandbox
	record may be pointed at a local simulator through site_config (never through the request)."""
	if settings.environment == "Production":
		return {"environment": "production"}
	target = {"environment": "sandbox"}
	base_url = frappe.conf.get("mpesa_daraja_base_url")
	if base_url:
		target["base_url"] = base_url
		if frappe.conf.get("mpesa_daraja_ca_file"):
			target["ca_file"] = frappe.conf.get("mpesa_daraja_ca_file")
	return target


def get_client(settings):
	"""The process's client for ``settings``, made again only when its credentials or host change."""
	return _entry(settings)[1]


def _entry(settings):
	secret = settings.get_password("consumer_secret")
	target = daraja_target(settings)
	fingerprint = hashlib.sha256(
		json.dumps([settings.consumer_key, secret, target], sort_keys=True).encode()
	).hexdigest()
	key = (frappe.local.site, settings.name)
	cached = _clients.get(key)
	if cached and cached[0] == fingerprint:
		return cached
	store = TokenStore(settings.name)
	client = daraja.Client(
		settings.consumer_key,
		secret,
		timeout=CLIENT_TIMEOUT,
		connect_timeout=CONNECT_TIMEOUT,
		token_store=store,
		**target,
	)
	_clients[key] = (fingerprint, client, store)
	return _clients[key]


def forget_client(name):
	"""Drop the cached client of a settings record (after its credentials changed)."""
	_clients.pop((getattr(frappe.local, "site", None), name), None)


class TokenStore:
	"""The OAuth token of one settings record, shared by every process of the site.

	``load`` answers from Redis, then from the record; if neither holds a live token it takes a
	Redis lock and answers None, so this process's core fetches one and calls ``store``. Other
	processes wait for that token instead of asking Daraja themselves: one token request per
	expiry for the whole site. The C core calls ``load`` from one thread per process at a time.

	Both take the ``timeout`` the core passes, the seconds its call has left: ``load`` waits for
	another process's token at most that long (and never longer than LOCK_SECONDS), then answers
	None; ``store`` waits on nothing (one Redis write and one row update) and accepts it to match.
	"""

	def __init__(self, settings_name):
		self.settings_name = settings_name
		self._owner = None

	def _key(self, what):
		# Raw Redis calls are not prefixed by frappe.cache: make_key adds the site's prefix.
		return frappe.cache.make_key(f"frappe_mpesa:{what}:{self.settings_name}")

	def load(self, timeout=None):
		wait = LOCK_SECONDS if timeout is None else min(LOCK_SECONDS, max(float(timeout), 0.0))
		deadline = time.monotonic() + wait
		while True:
			found = self._from_redis() or self._from_record()
			if found:
				return found
			owner = secrets.token_hex(16)
			if frappe.cache.set(self._key("token-lock"), owner, nx=True, px=int(LOCK_SECONDS * 1000)):
				self._owner = (owner, threading.get_ident())
				# Another process may have stored between our read and the lock.
				found = self._from_redis()
				if found:
					self.release()
					return found
				return None
			# Someone else is fetching: wait for their token, or for their lock to lapse.
			while time.monotonic() < deadline and frappe.cache.get(self._key("token-lock")) is not None:
				time.sleep(max(0.0, min(WAIT_STEP, deadline - time.monotonic())))
				found = self._from_redis()
				if found:
					return found
			if time.monotonic() >= deadline:
				return None

	def store(self, token, expires_at, timeout=None):
		try:
			ttl = int(expires_at - time.time())
			if ttl > 0:
				value = json.dumps({"token": encrypt(token), "expires_at": expires_at})
				frappe.cache.set(self._key("token"), value, ex=ttl)
			# The record keeps it too (encrypted), so a Redis restart costs no token request. This
			# joins the caller's transaction without committing it: a rollback only loses the
			# record's copy, never the token, and nothing is committed behind the caller's back.
			set_encrypted_password(SETTINGS, self.settings_name, token, "access_token")
			frappe.db.set_value(
				SETTINGS,
				self.settings_name,
				{"access_token": "*" * 8, "token_expires_at": expires_at},
				update_modified=False,
			)
		finally:
			self.release()

	def release(self):
		"""Give up the lock if this thread took it (also after a failed token request)."""
		held = self._owner
		if not held or held[1] != threading.get_ident():
			return
		self._owner = None
		if frappe.cache.get(self._key("token-lock")) in (held[0], held[0].encode()):
			frappe.cache.delete(self._key("token-lock"))

	def forget(self):
		"""Drop the shared token (credentials changed)."""
		frappe.cache.delete(self._key("token"))

	def _from_redis(self):
		raw = frappe.cache.get(self._key("token"))
		if not raw:
			return None
		try:
			value = json.loads(raw)
			return self._live(decrypt(value["token"]), float(value["expires_at"]))
		except Exception:
			# Unreadable (e.g. the encryption key changed): as good as absent.
			return None

	def _from_record(self):
		expires_at = frappe.db.get_value(SETTINGS, self.settings_name, "token_expires_at")
		if not expires_at or float(expires_at) - time.time() <= TOKEN_MARGIN:
			return None
		token = get_decrypted_password(SETTINGS, self.settings_name, "access_token", raise_exception=False)
		found = self._live(token, float(expires_at))
		if found:
			frappe.cache.set(
				self._key("token"),
				json.dumps({"token": encrypt(token), "expires_at": found[1]}),
				ex=int(found[1] - time.time()),
			)
		return found

	@staticmethod
	def _live(token, expires_at):
		if token and expires_at - time.time() > TOKEN_MARGIN:
			return (token, expires_at)
		return None


def call(settings, method, **kwargs):
	"""Call a Client method for ``settings``; Daraja's errors become frappe errors a person can read.

	The original error stays attached (``__cause__``) for callers that must tell "not sent" from
	"outcome unknown".
	"""
	_fingerprint, client, store = _entry(settings)
	try:
		return getattr(client, method)(**kwargs)
	except daraja.DarajaError as error:
		raise DarajaCallError.from_error(error) from error
	finally:
		# A failed token request never calls store(): let other processes try at once.
		store.release()


class DarajaCallError(frappe.ValidationError):
	"""A Daraja call failed; ``daraja_error`` is the facade's exception."""

	daraja_error = None

	@classmethod
	def from_error(cls, error):
		instance = cls(describe_error(error))
		instance.daraja_error = error
		return instance


def describe_error(error):
	"""One sentence for a Daraja error; the core's messages never hold secrets."""
	if isinstance(error, daraja.ValidationError):
		field = getattr(error, "field", None)
		return _("Invalid {0}: {1}").format(field, error) if field else _("Invalid input: {0}").format(error)
	if isinstance(error, daraja.AuthError):
		return _("Daraja refused the consumer key or secret ({0})").format(error)
	if isinstance(error, daraja.APIError):
		return _("Daraja answered {0}: {1}").format(
			error.error_code or error.http_status, error.error_message or error
		)
	if isinstance(error, daraja.TransportError):
		if error.sent:
			return _("No answer from Daraja after the request was sent: its outcome is unknown ({0})").format(
				error
			)
		return _("Could not reach Daraja; nothing was sent ({0})").format(error)
	return str(error)


def outcome_unknown(error):
	"""True when a failed money-moving call may still have reached Daraja."""
	cause = getattr(error, "daraja_error", error)
	return isinstance(cause, daraja.TransportError) and bool(cause.sent)


def callback_url(settings, kind):
	"""The URL Daraja posts ``kind`` callbacks for ``settings`` to."""
	try:
		return urls.callback_url(
			settings.callback_base_url, kind, settings.callback_id, settings.get_password("callback_secret")
		)
	except ValueError as error:
		frappe.throw(str(error))


def initiator_shortcode(settings):
	return settings.initiator_shortcode or settings.business_shortcode


def security_credential(settings):
	"""The Security Credential for ``settings``: computed now from the certificate Single and the
	initiator password, never stored anywhere."""
	if not settings.initiator_name:
		frappe.throw(_("Set the Initiator Name on Mpesa Settings {0}").format(settings.name))
	password = settings.get_password("initiator_password", raise_exception=False)
	if not password:
		frappe.throw(_("Set the Initiator Password on Mpesa Settings {0}").format(settings.name))
	certificate = read_certificate(settings.environment)
	try:
		return daraja.security_credential(certificate, password)
	except daraja.DarajaError as error:
		frappe.throw(describe_error(error))


def read_certificate(environment):
	"""The uploaded public key certificate for ``environment`` ("Sandbox"/"Production") as bytes."""
	fieldname = f"{environment.lower()}_certificate"
	file_url = frappe.db.get_single_value(CERTIFICATE, fieldname)
	if not file_url:
		frappe.throw(
			_("Upload Safaricom's {0} certificate in Mpesa Public Key Certificate first").format(environment)
		)
	return certificate_bytes(file_url)


def certificate_bytes(file_url):
	file_name = frappe.db.get_value("File", {"file_url": file_url}, "name")
	if not file_name:
		frappe.throw(_("The certificate file {0} is missing").format(file_url))
	content = frappe.get_doc("File", file_name).get_content()
	return content.encode() if isinstance(content, str) else content


def new_callback_secret():
	return urls.safe_secret(daraja.new_callback_secret)


def new_callback_id():
	# Hex cannot spell any word Daraja bans, and says nothing about the shortcode.
	return secrets.token_hex(8)

"""Daraja's callbacks: guest POST endpoints at neutral paths.

Daraja refuses callback URLs containing "mpesa", which this app's module path contains, so
hooks.override_whitelisted_methods serves these functions as /api/method/daraja_stk,
daraja_c2b_validation, daraja_c2b_confirmation, daraja_result and daraja_timeout.

Each request is: size-capped and rate-limited on the address our own proxy saw; verified (the
settings record's secret from the URL, compared in constant time, and its IP allowlist);
parsed by the C core; applied to the record it belongs to exactly once (``records``); and
answered with the JSON Daraja expects. Nothing here takes longer than a few queries: Daraja
gives C2B validation about 8 s and retries nothing reliably, so a slow answer is a lost one.

Frappe parses a JSON body itself before any app code runs (``make_form_dict``, ahead of the
``before_request`` hooks), and answers a body it cannot parse (invalid, nested too deep for
Python's parser, not an object) with its own error, exception text included where tracebacks
are allowed. ``after_request`` sees those callbacks, which never reached their handler, and
answers them as the handler does: refused with 400, logged, nothing of the error sent back.
"""

import json
import time

import frappe
from frappe.utils.password import get_decrypted_password
from werkzeug.wrappers import Response

from frappe_mpesa import daraja, records, remote, urls

SETTINGS = "Mpesa Settings"
MAX_BODY = 64 * 1024
# Per client address and settings record; Daraja's bursts stay far below this.
DEFAULT_RATE_LIMIT = 1200
RATE_WINDOW = 60
REJECTED = '{"ResultCode":1,"ResultDesc":"Rejected"}'
# /api/method/<alias> -> callback kind.
KIND_BY_PATH = {f"/api/method/{alias}": kind for kind, alias in urls.CALLBACK_ALIASES.items()}
# frappe.local.flags: Frappe finished reading the request (set by before_request)...
REQUEST_READY = "frappe_mpesa_request_ready"
# ... and a callback handler answered it.
HANDLED = "frappe_mpesa_callback_handled"
# Redis key (+ settings record): what the last verified callback's transport looked like.
TRANSPORT_KEY = "frappe_mpesa:callback-transport:"
TRANSPORT_TTL = 90 * 86400
# How often one worker process rewrites unchanged transport facts.
TRANSPORT_REFRESH = 60
# The columns of the settings record a callback needs; ``modified`` keys the secret's cache.
SETTINGS_FIELDS = [
	"name",
	"modified",
	"allowlist_mode",
	"callback_allowlist",
	"client_ip_header",
	"proxy_hops",
	"business_shortcode",
	"till_number",
	"transaction_limit",
	"c2b_reference_doctype",
]
# Per worker process, never in Redis: (site, settings record) -> (its modified, its callback
# secret), so a callback decrypts the secret once per process, not once per request. Saving the
# record (rotating the secret saves it) changes ``modified`` and so retires the entry.
_secrets = {}
# Per worker process: (site, settings record, its modified) -> (facts, when written), see
# record_transport.
_transports = {}


@frappe.whitelist(allow_guest=True, methods=["POST"])
def stk(**_ignored):
	return handle("stk")


@frappe.whitelist(allow_guest=True, methods=["POST"])
def c2b_validation(**_ignored):
	return handle("c2b_validation")


@frappe.whitelist(allow_guest=True, methods=["POST"])
def c2b_confirmation(**_ignored):
	return handle("c2b_confirmation")


@frappe.whitelist(allow_guest=True, methods=["POST"])
def result(**_ignored):
	return handle("result")


@frappe.whitelist(allow_guest=True, methods=["POST"])
def timeout(**_ignored):
	return handle("timeout")


@frappe.whitelist(allow_guest=True, methods=["POST"])
def pull(**_ignored):
	return handle("pull")


def reply(status, body):
	return Response(body, status=status, content_type="application/json")


def before_request():
	frappe.local.flags[REQUEST_READY] = True


def after_request(response=None, request=None):
	"""Answer a callback that Frappe refused before its handler ran (see the module's notes)."""
	kind = KIND_BY_PATH.get(getattr(request, "path", None))
	flags = frappe.local.flags
	if (
		kind is None
		or response is None
		or response.status_code in (413, 429)  # too big, or Frappe's own rate limit: as answered
		or request.method != "POST"
		or flags.get(HANDLED)
		or flags.get(REQUEST_READY)  # Frappe read it, so the handler's own answer stands
		or not getattr(frappe.local, "db", None)
		or frappe.local.conf.get("maintenance_mode")
	):
		return
	if not (getattr(frappe.local, "session", None) or {}).get("user"):
		frappe.set_user("Guest")
	frappe.db.rollback()
	answer = handle(kind)
	response.status_code = answer.status_code
	response.set_data(answer.get_data())
	response.headers["Content-Type"] = "application/json"


def handle(kind):
	frappe.local.flags[HANDLED] = True
	try:
		return _handle(kind)
	except Exception:
		# Nothing of an error reaches a guest; the Error Log keeps it.
		frappe.db.rollback()
		frappe.log_error(title=f"M-Pesa {kind} callback failed")
		frappe.db.commit()
		return reply(500, REJECTED)


def read_body(request):
	"""The body, or None if it is over MAX_BODY; a body without Content-Length (chunked) is read
	up to the cap (Frappe has already read it by the time a handler runs)."""
	length = request.content_length
	if length is not None and length > MAX_BODY:
		return None
	body = request.get_data(cache=True)
	return body if len(body) <= MAX_BODY else None


def _handle(kind):
	request = frappe.request
	body = read_body(request)
	if body is None:
		return reply(413, REJECTED)
	hook_id = request.args.get(urls.HOOK_PARAM)
	settings = None
	if hook_id:
		settings = frappe.db.get_value(SETTINGS, {"callback_id": hook_id, "enabled": 1}, SETTINGS_FIELDS, as_dict=True)
	address = client_address(settings)
	if rate_limited(kind, address):
		return reply(429, REJECTED)
	if not settings or not verified(settings, request.args.get(urls.SECRET_PARAM), address, kind):
		return reply(403, REJECTED)
	record_transport(settings)

	try:
		parsed = daraja.parse_callback(body, kind)
		refused = records.blank_correlation(kind, parsed)
	except daraja.ValidationError as error:
		refused = str(error)
	if refused:
		# From a verified sender, so worth keeping, but never applied.
		records.log_callback(
			settings.name, kind, body, None, records.Outcome(records.INVALID, note=refused), address
		)
		frappe.db.commit()
		return reply(400, REJECTED)

	if kind == "c2b_validation":
		return reply(200, validate_c2b(settings, parsed))

	outcome = records.apply(settings.name, kind, parsed, settings=settings)
	records.log_callback(settings.name, kind, body, parsed, outcome, address)
	frappe.db.commit()
	if outcome.status == records.INVALID:
		return reply(400, REJECTED)
	if outcome.status == records.UNMATCHED:
		# Our own request may have committed its record between our lookup and our log entry;
		# it checks for kept callbacks after committing, and we check again after ours, so one
		# of the two sees the other.
		if records.match_unmatched(records.correlation_id(kind, parsed)):
			frappe.db.commit()
	return reply(200, daraja.ack())


def client_address(settings):
	"""The address our own proxy saw (never the first X-Forwarded-For entry); None if unknown."""
	peer = frappe.request.remote_addr
	header = (settings.client_ip_header or "").strip() if settings else ""
	if not header:
		return remote.client_address(peer)
	return remote.client_address(peer, frappe.request.headers.get(header, ""), settings.proxy_hops or 1)


def record_transport(settings):
	"""Keep how this verified callback reached the app server, for the settings form's warning."""
	header = (settings.client_ip_header or "").strip()
	facts = remote.transport_facts(
		frappe.request.remote_addr,
		header or None,
		frappe.request.headers.get(header) if header else None,
		frappe.conf.get("mpesa_trusted_proxies"),
	)
	now = time.time()
	# Another worker may have written other facts since: the form's warning may lag by up to
	# TRANSPORT_REFRESH seconds when callbacks reach the server by two routes at once.
	key = (frappe.local.site, settings.name, settings.get("modified"))
	last = _transports.get(key)
	if last and last[0] == facts and now - last[1] < TRANSPORT_REFRESH:
		return  # this process said the same a moment ago
	facts = dict(facts, at=now)
	try:
		# A raw Redis call: no per-process copy, so every worker reads the latest.
		frappe.cache.set(
			frappe.cache.make_key(TRANSPORT_KEY + settings.name), json.dumps(facts), ex=TRANSPORT_TTL
		)
		_transports[key] = ({k: v for k, v in facts.items() if k != "at"}, now)
	except Exception:
		pass  # Redis down: the warning waits; the callback doesn't


def last_transport(settings_name):
	"""What ``record_transport`` kept for ``settings_name``, or None."""
	try:
		value = frappe.cache.get(frappe.cache.make_key(TRANSPORT_KEY + settings_name))
		return json.loads(value) if value else None
	except Exception:
		return None


def callback_secret(settings):
	"""The record's callback secret (None if it has none), decrypted once per worker process and
	version of the record."""
	key = (frappe.local.site, settings.name)
	cached = _secrets.get(key)
	if cached and settings.get("modified") and cached[0] == settings.modified:
		return cached[1]
	secret = get_decrypted_password(SETTINGS, settings.name, "callback_secret", raise_exception=False)
	if settings.get("modified"):
		_secrets[key] = (settings.modified, secret)
	return secret


def verified(settings, given_secret, address, kind):
	expected = callback_secret(settings)
	if not expected:
		return False
	try:
		allowlist = remote.allowlist_for(settings.allowlist_mode, settings.callback_allowlist)
	except ValueError:
		allowlist = ""  # a broken list allows nothing
	if settings.allowlist_mode == remote.ENFORCE:
		ok = daraja.verify_callback(expected, given_secret, address, allowlist)
	else:
		ok = daraja.verify_callback(expected, given_secret, address, None)
		if (
			ok
			and allowlist is not None
			and not daraja.verify_callback(expected, expected, address, allowlist)
		):
			frappe.logger("frappe_mpesa").warning(
				f"{kind} callback for {settings.name} from {address}, outside the allowlist (log-only mode)"
			)
	if not ok:
		frappe.logger("frappe_mpesa").warning(f"refused {kind} callback for {settings.name} from {address}")
	return ok


def rate_limited(kind, address):
	"""A fixed-window counter in Redis per (kind, address); True once over the limit."""
	limit = int(frappe.conf.get("mpesa_callback_rate_limit") or DEFAULT_RATE_LIMIT)
	window = int(time.time() // RATE_WINDOW)
	key = frappe.cache.make_key(f"frappe_mpesa:callback-rate:{kind}:{address}:{window}")
	try:
		count = frappe.cache.incr(key)
		if count == 1:
			frappe.cache.expire(key, RATE_WINDOW * 2)
	except Exception:
		# Redis down: take the callback rather than lose a payment notice.
		return False
	return count > limit


def validate_c2b(settings, parsed):
	"""Accept or reject a C2B payment before it happens (only if Safaricom enabled validation)."""
	if str(parsed.get("BusinessShortCode")) not in records.shortcodes(settings):
		return daraja.c2b_reject("C2B00015")
	limit = settings.transaction_limit
	if limit and parsed.get("TransAmount") is not None and float(parsed["TransAmount"]) > float(limit):
		return daraja.c2b_reject("C2B00013")
	if settings.c2b_reference_doctype:
		reference = (parsed.get("BillRefNumber") or "").strip()
		if not reference or not frappe.db.exists(settings.c2b_reference_doctype, reference):
			return daraja.c2b_reject("C2B00012")
	# Other layers judge the account number (the ERPNext layer: cancelled or paid documents),
	# through hooks so that nothing here imports them. A validator that fails accepts: the
	# payment is recorded either way, and a person allocates it.
	for validator in frappe.get_hooks("mpesa_c2b_validators"):
		try:
			code = frappe.get_attr(validator)(settings.name, parsed)
		except Exception:
			frappe.log_error(title=f"M-Pesa: C2B validator {validator} failed")
			continue
		if code:
			return daraja.c2b_reject(code)
	return daraja.c2b_accept()

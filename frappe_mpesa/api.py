"""Whitelisted methods behind the Desk buttons and for other apps.

Every method checks the caller's role itself (the DocType permissions do not protect a
function), validates its input through the C core before anything is sent, and answers with
a message that names what was wrong.
"""

import functools
import json

import frappe
from frappe import _
from frappe.utils import flt, now_datetime

from frappe_mpesa import daraja, initiator, pull, records, settings_store, states
from frappe_mpesa.privacy import redact
from frappe_mpesa.settings_store import DarajaCallError, get_settings, outcome_unknown, require_roles

ADMIN_ROLES = ("System Manager",)
PAYMENT_ROLES = ("Accounts User", "Accounts Manager", "System Manager")
MANAGER_ROLES = ("Accounts Manager", "System Manager")
EXPRESS = records.EXPRESS


def normalized_phone(phone):
	try:
		return daraja.normalize_phone(phone)
	except daraja.ValidationError as error:
		frappe.throw(_("Invalid phone number: {0}").format(error))


def whole_amount(amount, settings):
	value = flt(amount)
	if value < 1 or value != int(value):
		frappe.throw(_("Amount must be a whole number of shillings, at least 1"))
	if settings.transaction_limit and value > flt(settings.transaction_limit):
		frappe.throw(
			_("Amount {0} is above the transaction limit of {1}").format(value, settings.transaction_limit)
		)
	return int(value)


def shows_daraja_errors(fn):
	"""Show a failed Daraja call in Desk: Frappe shows only messages sent with the response, so a
	bare DarajaCallError would reach the browser as a silent error status."""

	@functools.wraps(fn)
	def wrapper(*args, **kwargs):
		try:
			return fn(*args, **kwargs)
		except DarajaCallError as error:
			frappe.msgprint(str(error), title=_("M-Pesa"), indicator="red")
			raise

	return wrapper


@frappe.whitelist(methods=["POST"])
@shows_daraja_errors
def test_connection(settings):
	"""Get a token for the settings record: proves the host, TLS and the consumer key and secret."""
	require_roles(ADMIN_ROLES)
	doc = get_settings(settings)
	settings_store.call(doc, "access_token")
	client = settings_store.get_client(doc)
	return {"ok": True, "environment": client.environment, "host": client.base_url}


@frappe.whitelist(methods=["POST"])
def stk_push(
	settings,
	amount,
	phone,
	reference_doctype=None,
	reference_name=None,
	account_reference=None,
	description=None,
):
	"""Prompt ``phone`` to pay ``amount`` (M-Pesa Express); returns the Mpesa Express Request."""
	require_roles(PAYMENT_ROLES)
	if reference_doctype and reference_name:
		frappe.has_permission(reference_doctype, "read", reference_name, throw=True)
	return start_stk_push(
		get_settings(settings),
		amount,
		phone,
		reference_doctype,
		reference_name,
		account_reference,
		description,
	)


def start_stk_push(
	doc_settings,
	amount,
	phone,
	reference_doctype=None,
	reference_name=None,
	account_reference=None,
	description=None,
):
	"""The push behind ``stk_push``, for callers that have already decided the user may ask for it.
	ERPNext's Payment Request calls it while it is being submitted (``Mpesa Settings.request_for_payment``):
	ERPNext has checked that user's rights, and a POS cashier may hold no Accounts role."""
	amount = whole_amount(amount, doc_settings)
	phone = normalized_phone(phone)
	account_reference = (account_reference or reference_name or doc_settings.business_shortcode)[:12]
	description = (description or "Payment")[:13]
	passkey = doc_settings.get_password("online_passkey", raise_exception=False)
	if not passkey:
		frappe.throw(_("Set the Online Passkey on Mpesa Settings {0}").format(doc_settings.name))
	buy_goods = doc_settings.transaction_type == "BuyGoods"
	callback = settings_store.callback_url(doc_settings, "stk")

	request = frappe.get_doc(
		{
			"doctype": EXPRESS,
			"mpesa_settings": doc_settings.name,
			"status": "Queued",
			"amount": amount,
			"phone": phone,
			"reference_doctype": reference_doctype,
			"reference_name": reference_name,
			"account_reference": account_reference,
			"description": description,
			"request_sent_on": now_datetime(),
		}
	)
	request.flags.ignore_permissions = True
	request.insert()
	# Committed first: the callback may arrive before this request has finished.
	frappe.db.commit()
	try:
		answer = settings_store.call(
			doc_settings,
			"stk_push",
			shortcode=doc_settings.business_shortcode,
			passkey=passkey,
			amount=amount,
			phone=phone,
			callback_url=callback,
			account_reference=account_reference,
			description=description,
			transaction_type="CustomerBuyGoodsOnline" if buy_goods else "CustomerPayBillOnline",
			party_b=doc_settings.till_number if buy_goods else None,
		)
	except DarajaCallError as error:
		status = "Unknown" if outcome_unknown(error) else "Failed"
		frappe.db.set_value(EXPRESS, request.name, {"status": status, "error": str(error)})
		frappe.db.commit()
		frappe.throw(
			_("{0} (Mpesa Express Request {1})").format(error, request.name), title=_("M-Pesa Express")
		)
	checkout_request_id = answer.get("CheckoutRequestID")
	row = records.lock_row(EXPRESS, "name", request.name, ["status"])
	values = {
		"checkout_request_id": checkout_request_id or None,
		"merchant_request_id": answer.get("MerchantRequestID") or None,
		"result_desc": answer.get("ResponseDescription"),
	}
	if states.can_move(states.STK, row.status, "Pending"):
		values["status"] = "Pending"
	frappe.db.set_value(EXPRESS, request.name, values)
	frappe.db.commit()
	if checkout_request_id and records.match_unmatched(checkout_request_id):
		frappe.db.commit()
	return {
		"name": request.name,
		"status": frappe.db.get_value(EXPRESS, request.name, "status"),
		"checkout_request_id": checkout_request_id,
		"customer_message": answer.get("CustomerMessage"),
	}


@frappe.whitelist(methods=["POST"])
@shows_daraja_errors
def stk_query(request):
	"""Ask Daraja for the outcome of a Pending Mpesa Express Request now; returns its status."""
	require_roles(PAYMENT_ROLES)
	frappe.has_permission(EXPRESS, "read", request, throw=True)
	return query_express_request(request)


def query_express_request(name):
	doc = frappe.get_doc(EXPRESS, name)
	if doc.status != "Pending" or not doc.checkout_request_id:
		return doc.status
	settings = get_settings(doc.mpesa_settings)
	frappe.db.set_value(
		EXPRESS,
		name,
		{"last_queried_on": now_datetime(), "query_attempts": (doc.query_attempts or 0) + 1},
		update_modified=False,
	)
	try:
		answer = settings_store.call(
			settings,
			"stk_query",
			shortcode=settings.business_shortcode,
			passkey=settings.get_password("online_passkey"),
			checkout_request_id=doc.checkout_request_id,
		)
	except DarajaCallError as error:
		cause = error.daraja_error
		frappe.db.commit()
		if isinstance(cause, daraja.APIError) and cause.error_code == "500.001.1001":
			return "Pending"  # "The transaction is being processed"
		raise
	records.apply_stk_query(name, answer)
	frappe.db.commit()
	return frappe.db.get_value(EXPRESS, name, "status")


@frappe.whitelist(methods=["POST"])
@shows_daraja_errors
def register_c2b_urls(settings, force=0):
	"""Register the C2B confirmation and validation URLs. One-time in production: guarded."""
	require_roles(ADMIN_ROLES)
	doc = get_settings(settings)
	if doc.environment == "Production" and doc.c2b_registered_on and not frappe.utils.cint(force):
		frappe.throw(
			_(
				"C2B URLs were registered on {0}. Production allows it once: delete the registration on "
				"Safaricom's portal first, then register again with force."
			).format(doc.c2b_registered_on)
		)
	try:
		answer = settings_store.call(
			doc,
			"c2b_register_urls",
			shortcode=doc.business_shortcode,
			confirmation_url=settings_store.callback_url(doc, "c2b_confirmation"),
			validation_url=settings_store.callback_url(doc, "c2b_validation"),
			response_type=doc.c2b_response_type or "Completed",
		)
	except DarajaCallError as error:
		doc.db_set("c2b_registration_result", str(error), update_modified=False)
		frappe.db.commit()
		raise
	doc.db_set(
		{
			"c2b_registered_on": now_datetime(),
			"c2b_registration_result": json.dumps(redact(answer), default=str),
		}
	)
	return answer


@frappe.whitelist(methods=["POST"])
@shows_daraja_errors
def check_balance(settings):
	"""Ask for the account balances; the result lands on the Mpesa Initiator Request returned."""
	require_roles(MANAGER_ROLES)
	return initiator.start_request(settings, "Account Balance", remarks="Account balance")


@frappe.whitelist(methods=["POST"])
@shows_daraja_errors
def transaction_status(settings, transaction_id=None, original_conversation_id=None):
	"""Ask for a transaction's status by receipt or OriginatorConversationID."""
	require_roles(MANAGER_ROLES)
	if not (transaction_id or original_conversation_id):
		frappe.throw(_("Give a transaction (receipt) ID or an OriginatorConversationID"))
	return initiator.start_request(
		settings,
		"Transaction Status",
		transaction_id=transaction_id,
		original_conversation_id=original_conversation_id,
		remarks="Transaction status",
	)


@frappe.whitelist(methods=["POST"])
@shows_daraja_errors
def reverse_transaction(settings, transaction_id, amount, remarks=None):
	"""Ask for a received payment to be reversed; returns the Mpesa Initiator Request, Awaiting
	Approval. Moves money: nothing is sent until another Accounts Manager approves it."""
	require_roles(MANAGER_ROLES)
	doc = get_settings(settings)
	amount = whole_amount(amount, doc)
	if not (transaction_id or "").strip():
		frappe.throw(_("Give the transaction (receipt) ID to reverse"))
	return initiator.request_reversal(settings, transaction_id.strip(), amount, remarks or "Reversal")


@frappe.whitelist(methods=["POST"])
@shows_daraja_errors
def approve_reversal(request):
	"""Approve a reversal someone else asked for, and send it (once)."""
	require_roles(MANAGER_ROLES)
	frappe.has_permission(records.INITIATOR, "read", request, throw=True)
	return initiator.approve_reversal(request)


@frappe.whitelist(methods=["POST"])
def reject_reversal(request):
	"""Close a reversal that awaits approval without sending it."""
	require_roles(MANAGER_ROLES)
	frappe.has_permission(records.INITIATOR, "read", request, throw=True)
	return initiator.reject_reversal(request)


@frappe.whitelist(methods=["POST"])
def rotate_callback_secret(settings):
	"""Give the settings record a new callback secret. Registered C2B URLs keep the old one."""
	require_roles(ADMIN_ROLES)
	doc = frappe.get_doc("Mpesa Settings", settings)
	doc.check_permission("write")
	doc.callback_secret = settings_store.new_callback_secret()
	doc.secret_rotated_on = now_datetime()
	doc.save()
	return {"rotated_on": doc.secret_rotated_on}


@frappe.whitelist(methods=["POST"])
@shows_daraja_errors
def register_pull(settings, force=0):
	"""Register the shortcode with the pull API. One-time in production: guarded."""
	require_roles(ADMIN_ROLES)
	return pull.register(settings, force)


@frappe.whitelist(methods=["POST"])
def pull_now(settings):
	"""Run a pull now (as the schedule would); answers the Mpesa Pull Run."""
	require_roles(ADMIN_ROLES)
	return pull.run(settings)

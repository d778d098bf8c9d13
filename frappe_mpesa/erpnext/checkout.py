"""Checkout where the sale happens: an STK push asked for from a submitted Sales Invoice or Sales
Order, a draft POS Invoice (the point-of-sale page, ``pos``) or a draft Payment Entry, its live
status for the user who asked, and what a success makes:

- Sales Invoice, Sales Order: a new Payment Entry allocated to it (for an order, an advance), made
  by ``payment_entry.build`` as every posting path is;
- Payment Entry (Receive, from a Customer): that draft gets the receipt as its Reference No, the
  M-Pesa clearing account and Mode of Payment, and is submitted: the accountant who drafted it
  gets it booked, not a second entry beside it;
- POS Invoice: nothing is posted; the cashier's payment row takes the amount and the receipt, and
  the invoice may be submitted only once its M-Pesa rows are covered (``pos.before_submit``). The
  money reaches the books with the invoice's consolidation, as every POS payment does.

- ``request_payment`` (Desk dialog): one push, or with ``split`` several within the transaction
  limit, each its own Mpesa Express Request linked to the document. Never above what is
  outstanding, counting pushes not yet settled; a second push to the same phone while one is
  pending is refused unless ``confirm``.
- ``on_change`` (doc_events of Mpesa Express Request, run in the transaction that moved its
  status): on Success a Payment Entry allocated to the document, once (the request's row is locked
  and its ``payment_entry`` is unique); every move is published, after commit, to the user who
  asked for the push only.
- ``check_now``: the dialog's STK query when no callback came within ``QUERY_AFTER`` seconds.
- Payment links (``get_payment_link``, and the guest ``link_*`` methods behind /mpesa-pay): a token
  signed with the site's secret (``links``) naming one Sales Invoice, expiring, rate-limited.

Nothing of ERPNext is imported at module level, and every hook returns at once without ERPNext.
"""

import functools
import secrets
import time

import frappe
from frappe import _
from frappe.utils import cint, flt, get_url, getdate, now_datetime, nowdate, time_diff_in_seconds

from frappe_mpesa import api, callbacks, daraja, links, records
from frappe_mpesa.erpnext import active
from frappe_mpesa.settings_store import get_settings, require_roles

SALES_INVOICE, SALES_ORDER = "Sales Invoice", "Sales Order"
POS_INVOICE, PAYMENT_ENTRY = "POS Invoice", "Payment Entry"
DOCTYPES = (SALES_INVOICE, SALES_ORDER, POS_INVOICE, PAYMENT_ENTRY)
POSTED = (SALES_INVOICE, SALES_ORDER)  # a success becomes a new Payment Entry for the document
DRAFTS = (POS_INVOICE, PAYMENT_ENTRY)  # asked for while the document is a draft
BOOKED = (SALES_INVOICE, SALES_ORDER, PAYMENT_ENTRY)  # a success is booked by this module
EXPRESS = records.EXPRESS
SETTINGS = records.SETTINGS
# Not settled yet: counted against what is outstanding. A Success without a Payment Entry (its
# posting failed and waits for a person) is money received, so it counts too.
OPEN = ("Queued", "Pending", "Unknown")
PENDING = ("Queued", "Pending")
EVENT = "mpesa_checkout"
QUERY_AFTER = 60  # seconds without a callback before the dialog may ask Daraja
LINK_SECRET_KEY = "mpesa_link_secret"
LINK_DAYS = 7
LINK_RATE = {"token": (10, 600), "address": (30, 600)}  # pushes per window (seconds)
STATUS_POLL_RATE = (120, 600)

# What the dialog and the payment page show for each status (and result code).
LABELS = {
	"Queued": "Sending the prompt",
	"Pending": "Waiting for the customer to enter their PIN",
	"Success": "Paid",
	"Cancelled": "Cancelled by the customer",
	"Timeout": "Timed out: the customer did not answer",
	"Unknown": "Unknown: the prompt may have been sent; check later",
}
FAILED_LABELS = {"2001": "Wrong PIN", "1": "Insufficient funds"}


class PendingPushError(frappe.ValidationError):
	"""A push to this phone for this document is still pending: confirm to send another."""


# ---- what the dialog needs -------------------------------------------------------------------


def reference(doctype, name, for_update=False):
	"""The submitted Sales Invoice or Sales Order, or the draft POS Invoice or Payment Entry,
	``name``; a clear error otherwise."""
	if doctype not in DOCTYPES:
		frappe.throw(
			_("M-Pesa checkout takes a Sales Invoice, Sales Order, POS Invoice or Payment Entry, not {0}").format(
				doctype
			)
		)
	if not name or not frappe.db.exists(doctype, name):
		frappe.throw(_("{0} {1} does not exist").format(_(doctype), name))
	if for_update:
		frappe.db.get_value(doctype, name, "name", for_update=True)
	doc = frappe.get_doc(doctype, name)
	if doc.docstatus == 2:
		frappe.throw(_("{0} {1} is cancelled: nothing to pay").format(_(doctype), name))
	if doctype in DRAFTS:
		if doc.docstatus != 0:
			frappe.throw(_("{0} {1} is submitted: ask for payment while it is a draft").format(_(doctype), name))
	elif doc.docstatus != 1:
		frappe.throw(_("Submit {0} {1} before asking for payment").format(_(doctype), name))
	if doctype == PAYMENT_ENTRY and (doc.payment_type != "Receive" or doc.party_type != "Customer" or not doc.party):
		frappe.throw(
			_("Payment Entry {0}: only a Receive entry from a Customer is paid by M-Pesa").format(name)
		)
	return doc


def document_outstanding(doc):
	"""What the document still asks for, before counting pushes in flight."""
	if doc.doctype == SALES_INVOICE:
		return flt(doc.outstanding_amount, 2)
	if doc.doctype == PAYMENT_ENTRY:
		return flt(doc.paid_amount, 2)
	total = flt(doc.rounded_total) or flt(doc.grand_total)
	if doc.doctype == POS_INVOICE:
		return max(flt(total - applied_total(doc.name), 2), 0)
	return flt(total - flt(doc.advance_paid), 2)


def applied_total(pos_invoice):
	"""The C2B receipts applied to a POS Invoice at the till (``pos.apply_receipt``): paid already."""
	if not frappe.get_meta(records.C2B).has_field("pos_invoice"):
		return 0
	total = frappe.db.sql(f"select sum(trans_amount) from `tab{records.C2B}` where pos_invoice = %s", (pos_invoice,))
	return flt(total[0][0] if total else 0, 2)


def document_currency(doc):
	if doc.doctype == PAYMENT_ENTRY:
		return doc.paid_from_account_currency or frappe.get_cached_value("Company", doc.company, "default_currency")
	return doc.currency


def require_rights(doctype, name):
	"""Accounts staff who may read the document; for a POS Invoice, whoever may edit it (the
	cashier of the sale holds no Accounts role)."""
	if doctype == POS_INVOICE:
		frappe.has_permission(doctype, "write", name, throw=True)
		return
	require_roles(api.PAYMENT_ROLES)
	frappe.has_permission(doctype, "read", name, throw=True)


def in_flight(doctype, name):
	"""Pushes for the document not yet reflected in its outstanding amount."""
	rows = frappe.get_all(
		EXPRESS,
		filters={"reference_doctype": doctype, "reference_name": name},
		fields=["name", "status", "amount", "phone", "payment_entry", "link_nonce", "owner"],
	)
	return [row for row in rows if row.status in OPEN or (row.status == "Success" and not row.payment_entry)]


def available(doc):
	"""What may still be pushed for: outstanding minus pushes in flight (never below 0)."""
	taken = sum(flt(row.amount) for row in in_flight(doc.doctype, doc.name))
	return max(flt(document_outstanding(doc) - taken, 2), 0)


def default_settings(company):
	"""The company's Mpesa Settings: the enabled record whose ``company`` matches, else the only
	(or first) enabled one; None when there is none."""
	if company and frappe.get_meta(SETTINGS).has_field("company"):
		name = frappe.db.get_value(SETTINGS, {"enabled": 1, "company": company}, "name", order_by="creation")
		if name:
			return name
	names = frappe.get_all(SETTINGS, filters={"enabled": 1}, pluck="name", order_by="creation", limit=1)
	return names[0] if names else None


def settings_for(doc, settings=None):
	name = settings or default_settings(doc.company)
	if not name:
		frappe.throw(
			_("Mpesa Settings: no enabled record for company {0}: add one before asking for payment").format(
				doc.company
			),
			title=_("No M-Pesa settings"),
		)
	if not frappe.db.exists(SETTINGS, name):
		frappe.throw(_("Mpesa Settings: {0} does not exist").format(name))
	record = get_settings(name)
	if not record.enabled:
		frappe.throw(_("Mpesa Settings: {0} is disabled").format(name))
	company = record.get("company")
	if company and company != doc.company:
		frappe.throw(
			_("Mpesa Settings: {0} belongs to {1}, not to {2}").format(name, company, doc.company)
		)
	return record


def customer_phone(doc):
	"""The mobile (else phone) of the customer's primary contact, or the document's contact."""
	customer = doc.get("customer") or doc.get("party")
	contact = frappe.db.get_value("Customer", customer, "customer_primary_contact") or doc.get(
		"contact_person"
	)
	if contact:
		phone = frappe.db.get_value("Contact", contact, ["mobile_no", "phone"], as_dict=True)
		if phone and (phone.mobile_no or phone.phone):
			return phone.mobile_no or phone.phone
	return doc.get("contact_mobile") or doc.get("contact_phone") or ""


@frappe.whitelist()
def checkout_defaults(doctype, name):
	"""What the dialog opens with: phone, amount, settings, limit and pushes in flight."""
	require_rights(doctype, name)
	doc = reference(doctype, name)
	settings = default_settings(doc.company)
	limit = flt(frappe.db.get_value(SETTINGS, settings, "transaction_limit")) if settings else 0
	return {
		"phone": customer_phone(doc),
		"amount": int(available(doc)),
		"outstanding": document_outstanding(doc),
		"settings": settings,
		"transaction_limit": limit,
		"currency": document_currency(doc),
		"in_flight": [
			{"name": row.name, "status": row.status, "amount": row.amount, "phone": row.phone}
			for row in in_flight(doctype, name)
		],
	}


# ---- asking for payment ---------------------------------------------------------------------


def checked_phone(phone):
	try:
		return daraja.normalize_phone((phone or "").strip())
	except daraja.ValidationError as error:
		frappe.throw(_("Phone: {0} is not a Kenyan mobile number ({1})").format(phone or "", error))


def checked_amount(amount, doc, settings, split):
	"""A whole amount within what is outstanding, and within the limit unless split; the parts."""
	value = flt(amount)
	if value < 1 or value != int(value):
		frappe.throw(_("Amount: must be a whole number of shillings, at least 1 (got {0})").format(amount))
	if doc.doctype == PAYMENT_ENTRY:
		# One receipt books one entry: the push is for its Paid Amount, in one prompt.
		if value != flt(doc.paid_amount, 2):
			frappe.throw(
				_("Amount: Payment Entry {0} is paid by one prompt for its Paid Amount {1}, not {2}").format(
					doc.name, flt(doc.paid_amount, 2), value
				)
			)
		split = 0
	room = available(doc)
	if value > room:
		frappe.throw(
			_(
				"Amount: {0} is above what {1} {2} still asks for ({3}, counting pushes not yet settled)"
			).format(value, _(doc.doctype), doc.name, room)
		)
	limit = flt(settings.transaction_limit)
	if limit and value > limit:
		if not split:
			frappe.throw(
				_(
					"Amount: {0} is above the M-Pesa transaction limit of {1}: tick Split to send it in several prompts"
				).format(value, limit)
			)
		return links.split_amount(int(value), int(limit))
	return [int(value)]


def pending_for_phone(doctype, name, phone):
	return [
		row.name
		for row in in_flight(doctype, name)
		if row.status in PENDING and row.phone == phone
	]


@frappe.whitelist(methods=["POST"])
@api.shows_daraja_errors
def request_payment(doctype, name, phone, amount, settings=None, split=0, confirm=0):
	"""Send the STK push(es) for a submitted Sales Invoice or Sales Order; returns the requests."""
	require_rights(doctype, name)
	doc = reference(doctype, name)
	record = settings_for(doc, settings)
	if document_currency(doc) != "KES":
		frappe.throw(
			_("{0} {1} is in {2}: M-Pesa takes KES only").format(_(doctype), name, document_currency(doc))
		)
	phone = checked_phone(phone)
	parts = checked_amount(amount, doc, record, cint(split))
	pending = pending_for_phone(doctype, name, phone)
	if pending and not cint(confirm):
		frappe.throw(
			_("A prompt to {0} for {1} is still pending ({2}): confirm to send another").format(
				phone, name, ", ".join(pending)
			),
			PendingPushError,
			title=_("Prompt pending"),
		)
	return [push(doc.doctype, doc.name, record, part, phone) for part in parts]


def push(doctype, name, settings, amount, phone, nonce=None):
	"""One push for ``amount`` with the document row locked while the cap is checked again and the
	request is saved (start_stk_push commits before sending)."""
	doc = reference(doctype, name, for_update=True)
	room = available(doc)
	if amount > room:
		frappe.throw(
			_("Amount: {0} is above what {1} {2} still asks for ({3})").format(amount, _(doctype), name, room)
		)
	if nonce and any(row.link_nonce == nonce and row.status in PENDING for row in in_flight(doctype, name)):
		frappe.throw(_("A prompt from this link is still pending: answer it on your phone first"))
	frappe.flags.mpesa_link_nonce = nonce
	try:
		answer = api.start_stk_push(
			settings,
			amount,
			phone,
			reference_doctype=doctype,
			reference_name=name,
			account_reference=name[-12:],
		)
	finally:
		frappe.flags.mpesa_link_nonce = None
	answer["label"] = label(answer["status"], None)
	# Queued -> Pending is written without hooks (api.start_stk_push): told here, once committed.
	publish(frappe.get_doc(EXPRESS, answer["name"]))
	return answer


def before_insert(doc, method=None):
	"""doc_events: the link a push came from (its nonce), set by ``push``."""
	nonce = frappe.flags.get("mpesa_link_nonce")
	if nonce:
		doc.link_nonce = nonce


# ---- status --------------------------------------------------------------------------------


def label(status, result_code):
	if status == "Failed":
		return FAILED_LABELS.get(str(result_code or "").strip(), "Failed")
	return LABELS.get(status, status)


def status_message(doc):
	"""What the dialog is told about one Express Request (nothing secret, no phone)."""
	return {
		"request": doc.name,
		"reference_doctype": doc.reference_doctype,
		"reference_name": doc.reference_name,
		"status": doc.status,
		"result_code": doc.result_code,
		"label": label(doc.status, doc.result_code),
		"receipt": doc.receipt_number,
		"payment_entry": doc.get("payment_entry"),
		"amount": doc.amount,
	}


def publish(doc, after_commit=True):
	"""Tell the user who asked for the push, and no one else (their own room), once committed."""
	user = doc.owner
	if not user or user == "Guest":
		return False
	frappe.publish_realtime(EVENT, status_message(doc), user=user, after_commit=after_commit)
	return True


def on_change(doc, method=None):
	"""doc_events: a status move of an Express Request for a checkout document.

	A Success for a document booked here is posted after the move commits
	(``post_after_commit``), then published; any other move (a POS Invoice's Success too) is
	published when its transaction commits."""
	if doc.reference_doctype not in DOCTYPES or not active():
		return
	before = doc.get_doc_before_save()
	if before is not None and before.status == doc.status:
		return
	if before is None and doc.status == "Queued":
		return  # just inserted; ``push`` tells the answer
	if doc.status == "Success" and doc.reference_doctype in BOOKED:
		frappe.db.after_commit.add(
			functools.partial(post_after_commit, doc.name, doc.reference_doctype, doc.reference_name)
		)
		return
	publish(doc)


def post_after_commit(name, doctype, docname):
	"""Post a successful push in a transaction of its own whose first statement locks the
	document. ERPNext recomputes the outstanding amount from the ledger; a snapshot taken before
	that lock (the callback's transaction has read plenty) would miss a concurrent push's entry and
	undo its allocation on the invoice."""
	try:
		frappe.db.sql("commit")  # the commit that ran this left an empty transaction: start afresh
		frappe.db.sql("start transaction")
		post_payment(name, doctype, docname)
		frappe.db.commit()
	except Exception:
		frappe.db.rollback()
		frappe.log_error(title=f"M-Pesa: posting Mpesa Express Request {name} failed")
	publish(frappe.get_doc(EXPRESS, name), after_commit=False)


@frappe.whitelist(methods=["POST"])
@api.shows_daraja_errors
def check_now(request):
	"""The dialog's "check now": an STK query when the push is still Pending after QUERY_AFTER s.
	The cashier who asked for a POS Invoice's push may check it too."""
	if not request or not frappe.db.exists(EXPRESS, request):
		frappe.throw(_("Mpesa Express Request {0} does not exist").format(request))
	doc = frappe.get_doc(EXPRESS, request)
	cashier = doc.reference_doctype == POS_INVOICE and doc.owner == frappe.session.user
	if cashier:
		frappe.has_permission(POS_INVOICE, "write", doc.reference_name, throw=True)
	else:
		require_roles(api.PAYMENT_ROLES)
		frappe.has_permission(EXPRESS, "read", request, throw=True)
	if doc.status == "Pending" and doc.request_sent_on:
		waited = time_diff_in_seconds(now_datetime(), doc.request_sent_on)
		if waited >= QUERY_AFTER:
			api.query_express_request(request)
			doc.reload()
	return status_message(doc)


# ---- the Payment Entry -------------------------------------------------------------------------


def post_payment(name, doctype, docname):
	"""The Payment Entry for a successful push: a new one allocated to its Sales Invoice or Sales
	Order, or its own draft Payment Entry submitted; once. A failure is kept on the request
	(reference_outcome, Error Log), never undoing the Success: the money moved."""
	from frappe_mpesa.payment_requests import as_administrator

	if doctype not in BOOKED:
		return None
	# The document first (see post_after_commit), then the request: a second push's posting waits.
	frappe.db.get_value(doctype, docname, "name", for_update=True)
	row = records.lock_row(
		EXPRESS,
		"name",
		name,
		[
			"name",
			"status",
			"amount",
			"reference_doctype",
			"reference_name",
			"receipt_number",
			"payment_entry",
			"mpesa_settings",
			"transaction_date",
		],
	)
	if not row or row.status != "Success" or row.payment_entry:
		return None
	if (row.reference_doctype, row.reference_name) != (doctype, docname):
		return None
	frappe.db.savepoint("frappe_mpesa_checkout")
	try:
		with as_administrator():
			entry = make_payment_entry(row) if doctype in POSTED else submit_draft_entry(row)
		frappe.db.set_value(
			EXPRESS,
			name,
			{"payment_entry": entry.name, "reference_outcome": _("Payment Entry {0}").format(entry.name)},
			update_modified=False,
		)
		return entry.name
	except Exception as error:
		frappe.db.rollback(save_point="frappe_mpesa_checkout")
		frappe.log_error(title=f"M-Pesa: posting {row.reference_doctype} {row.reference_name} failed")
		frappe.db.set_value(
			EXPRESS,
			name,
			"reference_outcome",
			_("No Payment Entry, finish by hand (Error Log): {0}").format(str(error) or type(error).__name__),
			update_modified=False,
		)
		return None


def make_payment_entry(row):
	"""The new Payment Entry for a push from a Sales Invoice (paid up to its outstanding amount) or
	a Sales Order (an advance against it), built as every receipt's is."""
	from frappe_mpesa.erpnext import c2b_posting, payment_entry

	settings = get_settings(row.mpesa_settings)
	customer = frappe.db.get_value(row.reference_doctype, row.reference_name, "customer")
	return payment_entry.build(
		settings,
		row.amount,
		getdate(nowdate()),
		customer,
		c2b_posting.document_items(row.reference_doctype, row.reference_name, settings),
		reference_no=row.receipt_number or row.name,
		remarks=_("M-Pesa {0} for {1} {2} (Mpesa Express Request {3})").format(
			row.receipt_number or "", row.reference_doctype, row.reference_name, row.name
		),
	)


def submit_draft_entry(row):
	"""The push's own draft Payment Entry, completed and submitted: Reference No the receipt, paid
	to the settings' clearing account with their Mode of Payment. Refused (payment_entry.NotPosted)
	when the draft is no longer a draft or its Paid Amount is not what was received."""
	from frappe_mpesa.erpnext import payment_entry

	entry = frappe.get_doc(PAYMENT_ENTRY, row.reference_name)
	if entry.docstatus != 0:
		raise payment_entry.NotPosted(_("Payment Entry {0} is no longer a draft").format(entry.name))
	if flt(entry.paid_amount, 2) != flt(row.amount, 2):
		raise payment_entry.NotPosted(
			_("Payment Entry {0}'s Paid Amount {1} is not the {2} received").format(
				entry.name, flt(entry.paid_amount, 2), flt(row.amount, 2)
			)
		)
	settings = get_settings(row.mpesa_settings)
	account = settings.get("mpesa_account")
	if account and entry.paid_to != account:
		entry.paid_to = account
		entry.paid_to_account_currency = frappe.get_cached_value("Account", account, "account_currency")
	if settings.get("mode_of_payment"):
		entry.mode_of_payment = settings.get("mode_of_payment")
	entry.reference_no = row.receipt_number or row.name
	entry.reference_date = getdate(row.transaction_date) if row.transaction_date else getdate(nowdate())
	entry.flags.ignore_permissions = True
	entry.submit()
	return entry


# ---- payment links -------------------------------------------------------------------------


def link_secret():
	"""The site's 32-byte link secret (site config ``mpesa_link_secret``), made when missing."""
	value = frappe.conf.get(LINK_SECRET_KEY)
	if not value:
		from frappe.installer import update_site_config

		value = secrets.token_hex(32)
		update_site_config(LINK_SECRET_KEY, value)
		frappe.local.conf[LINK_SECRET_KEY] = value
	return bytes.fromhex(value)


def make_token(name, days=LINK_DAYS, now=None):
	expires = int((now or time.time()) + days * 86400)
	return links.sign(link_secret(), SALES_INVOICE, name, expires)


@frappe.whitelist(methods=["POST"])
def get_payment_link(name, days=LINK_DAYS):
	"""A payment link for submitted Sales Invoice ``name``, valid ``days`` days."""
	require_roles(api.PAYMENT_ROLES)
	frappe.has_permission(SALES_INVOICE, "read", name, throw=True)
	doc = reference(SALES_INVOICE, name)
	if document_outstanding(doc) <= 0:
		frappe.throw(_("Sales Invoice {0} is paid: no link to send").format(name))
	days = cint(days) or LINK_DAYS
	if days < 1 or days > 30:
		frappe.throw(_("Days: a link lasts 1 to 30 days"))
	token = make_token(name, days)
	return {"url": get_url(f"/mpesa-pay?token={token}"), "expires_in_days": days}


def link_document(token):
	"""(invoice, nonce) for a valid token naming a submitted, unpaid Sales Invoice; refuses otherwise."""
	try:
		doctype, name, _expires, nonce = links.verify(link_secret(), token, int(time.time()))
	except links.LinkError as error:
		frappe.throw(_("This payment link cannot be used: {0}").format(error), frappe.PermissionError)
	if doctype != SALES_INVOICE or not frappe.db.exists(doctype, name):
		frappe.throw(_("This payment link cannot be used: its document is gone"), frappe.PermissionError)
	doc = frappe.get_doc(doctype, name)
	if doc.docstatus != 1:
		frappe.throw(_("This payment link cannot be used: the invoice is cancelled"), frappe.PermissionError)
	if document_outstanding(doc) <= 0:
		frappe.throw(_("This invoice is paid: nothing is left to pay"), frappe.PermissionError)
	return doc, nonce


def link_view(doc):
	"""All a payment page shows: the business name, the amount left and the reference."""
	return {
		"company": doc.company,
		"outstanding": available(doc),
		"currency": doc.currency,
		"reference": doc.name,
	}


def limited(kind, identity):
	"""A fixed-window counter per (kind, identity) in Redis; throws once over the limit."""
	limit, window = LINK_RATE.get(kind, STATUS_POLL_RATE)
	key = frappe.cache.make_key(f"frappe_mpesa:link-rate:{kind}:{identity}:{int(time.time() // window)}")
	count = frappe.cache.incr(key)
	if count == 1:
		frappe.cache.expire(key, window * 2)
	if count > limit:
		frappe.throw(_("Too many attempts: try again in a few minutes"), frappe.RateLimitExceededError)


def client_address(doc):
	"""The payer's address as our own proxy saw it (the settings' header and hops), for the limit."""
	if not getattr(frappe.local, "request", None):
		return "no-request"
	settings = default_settings(doc.company)
	record = frappe.get_cached_doc(SETTINGS, settings) if settings else None
	return callbacks.client_address(record) or frappe.local.request_ip or "unknown"


@frappe.whitelist(allow_guest=True)
def link_info(token):
	doc, _nonce = link_document(token)
	return link_view(doc)


@frappe.whitelist(allow_guest=True, methods=["POST"])
def link_push(token, phone):
	"""The payment page's push: the link's invoice, for what it still asks for, at most."""
	doc, nonce = link_document(token)
	limited("token", nonce)
	limited("address", client_address(doc))
	record = settings_for(doc)
	phone = checked_phone(phone)
	amount = int(available(doc))
	if amount < 1:
		frappe.throw(_("A prompt for this invoice is still pending: answer it on your phone first"))
	limit = int(flt(record.transaction_limit))
	if limit and amount > limit:
		amount = limit  # one prompt at a time from a link; the rest with the next one
	answer = push(doc.doctype, doc.name, record, amount, phone, nonce=nonce)
	return {"request": answer["name"], "status": answer["status"], "label": answer["label"], "amount": amount}


@frappe.whitelist(allow_guest=True)
def link_status(token, request):
	"""The status of one push started from this link; nothing about any other."""
	try:
		_doctype, name, _expires, nonce = links.verify(link_secret(), token, int(time.time()))
	except links.LinkError as error:
		frappe.throw(_("This payment link cannot be used: {0}").format(error), frappe.PermissionError)
	limited("status", nonce)
	row = frappe.db.get_value(
		EXPRESS,
		{"name": request, "link_nonce": nonce, "reference_doctype": SALES_INVOICE, "reference_name": name},
		["status", "result_code", "receipt_number"],
		as_dict=True,
	)
	if not row:
		frappe.throw(_("No such prompt for this link"), frappe.PermissionError)
	return {"status": row.status, "label": label(row.status, row.result_code), "receipt": row.receipt_number}

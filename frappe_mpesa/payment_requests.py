"""ERPNext Payment Requests paid with M-Pesa Express.

On a site with frappe/payments, each Mpesa Settings record has a Payment Gateway record
"Mpesa-<name>" (gateway_settings "Mpesa Settings", gateway_controller the record's name), as
payments itself makes them. An ERPNext Payment Request on a Phone gateway account of that gateway
calls the record's controller: ``validate_transaction_currency``, then ``request_for_payment``,
which sends one STK push through ``api.start_stk_push`` with the Payment Request as the Mpesa
Express Request's reference. When that request becomes Success (``erpnext.express_posting``, on
the request's on_change), the Payment Request is authorized in the same transaction as the status
change: the state machine lets Success happen once, so the
authorization does too.

Nothing of payments or ERPNext is imported at module level: the app runs without them.
"""

from contextlib import contextmanager

import frappe
from frappe import _
from frappe.utils import call_hook_method, flt

from frappe_mpesa import api, gateway, records

PAYMENT_REQUEST = "Payment Request"
PAYMENT_GATEWAY = "Payment Gateway"
PAYMENT_GATEWAY_ACCOUNT = "Payment Gateway Account"
SETTINGS = records.SETTINGS
EXPRESS = records.EXPRESS
PAYMENTS_APP = "payments"
ERPNEXT_APP = "erpnext"


def installed(app):
	return app in frappe.get_installed_apps()


# ---- the Payment Gateway record ---------------------------------------------------------------


def ensure_gateway(settings_name):
	"""Create "Mpesa-<settings_name>" as payments does, once; then let ERPNext add its account."""
	if not installed(PAYMENTS_APP) or not frappe.db.table_exists(PAYMENT_GATEWAY):
		return None
	name = gateway.gateway_name(settings_name)
	if not frappe.db.exists(PAYMENT_GATEWAY, name):
		frappe.get_doc(
			{
				"doctype": PAYMENT_GATEWAY,
				"gateway": name,
				"gateway_settings": SETTINGS,
				"gateway_controller": settings_name,
			}
		).insert(ignore_permissions=True)
	if installed(ERPNEXT_APP) and not frappe.db.exists(PAYMENT_GATEWAY_ACCOUNT, {"payment_gateway": name}):
		# ERPNext's hook makes the bank account and the Payment Gateway Account for the default
		# company (payment_channel Phone: its Payment Requests push instead of emailing a link).
		call_hook_method("payment_gateway_enabled", gateway=name, payment_channel="Phone")
	return name


def ensure_gateways():
	"""Payment Gateway records for every settings record (install, migrate, payments installed later)."""
	if not installed(PAYMENTS_APP):
		return
	for name in frappe.get_all(SETTINGS, pluck="name"):
		ensure_gateway(name)


# ---- the controller contract ----------------------------------------------------------------


def validate_transaction_currency(currency):
	if not gateway.supported_currency(currency):
		frappe.throw(
			_("M-Pesa takes payments in {0} only, not {1}: choose another payment gateway").format(
				", ".join(gateway.CURRENCIES), currency or _("no currency")
			),
			title=_("Currency not supported"),
		)


def request_for_payment(settings, **kwargs):
	"""Send the STK push for a Payment Request (ERPNext's ``request_phone_payment``).

	One push for the whole amount. An amount above the settings' transaction limit is refused
	rather than split into several prompts: a split leaves a Payment Request half paid when the
	customer declines a later prompt, and ERPNext lets the invoice be asked for in several
	Payment Requests instead, each of which stays one payment and one Payment Entry.
	"""
	args = frappe._dict(kwargs)
	validate_transaction_currency(args.currency or gateway.CURRENCIES[0])
	settings = api.get_settings(settings.name)
	reference_doctype = args.reference_doctype or PAYMENT_REQUEST
	reference_name = args.reference_docname
	if not reference_name:
		frappe.throw(_("No Payment Request given to request the payment for"))
	amount = flt(args.request_amount)
	if settings.transaction_limit and amount > flt(settings.transaction_limit):
		frappe.throw(
			_(
				"{0} is above the M-Pesa transaction limit of {1} on Mpesa Settings {2}: request the amount in "
				"several Payment Requests, each within the limit"
			).format(_kes(amount), _kes(settings.transaction_limit), settings.name),
			title=_("Amount above the transaction limit"),
		)
	# ERPNext passes the Payment Request's recipient (an email or a user) as the sender and its Phone
	# Number apart; payments' POS flow passes the phone as the sender.
	sender = (args.sender or "").replace(" ", "")
	phone = args.phone_number or (sender if sender.lstrip("+").isdigit() else None)
	if not phone:
		frappe.throw(_("Payment Request {0} has no Phone Number to prompt").format(reference_name))
	return api.start_stk_push(
		settings,
		amount,
		phone,
		reference_doctype=reference_doctype,
		reference_name=reference_name,
		account_reference=gateway.account_reference(reference_name),
	)


# ---- authorization when the push succeeded ------------------------------------------------------


def on_express_success(name):
	"""Authorize the Payment Request an Express Request paid; called by ``erpnext.express_posting``
	(the request's on_change) in the transaction that moved the request to Success (and only then,
	so once).

	A failure here (accounting set up incompletely, say) must not undo the Success: the money has
	moved. It is rolled back on its own and written on the Express Request and the Error Log, for a
	person to finish by hand.
	"""
	row = frappe.db.get_value(
		EXPRESS,
		name,
		["name", "reference_doctype", "reference_name", "amount", "receipt_number"],
		as_dict=True,
	)
	if not row or row.reference_doctype != PAYMENT_REQUEST or not row.reference_name:
		return None
	if not frappe.db.table_exists(PAYMENT_REQUEST):
		return _set_outcome(name, _("Not authorized: this site has no Payment Request DocType (ERPNext)"))
	frappe.db.savepoint("frappe_mpesa_payment_request")
	try:
		with as_administrator():
			note = authorize(row)
	except Exception as error:
		frappe.db.rollback(save_point="frappe_mpesa_payment_request")
		frappe.log_error(title=f"M-Pesa: authorizing Payment Request {row.reference_name} failed")
		note = _("Not authorized, finish by hand (Error Log): {0}").format(str(error) or type(error).__name__)
	return _set_outcome(name, note)


@contextmanager
def as_administrator():
	"""Run as Administrator, then give the request back its own session untouched.

	Callbacks arrive as Guest, and ERPNext checks Payment Entry permissions while it builds one. The
	callback has been verified (secret, allowlist, CheckoutRequestID, amount) and the Payment
	Request's owner asked for this payment, so the entry is made as the person recording it would.
	frappe.set_user rewrites the session in place (sid, data) and clears form_dict: a copy takes
	that, and the caller's objects and permission caches are put back afterwards.
	"""
	local = frappe.local
	session, form_dict = local.session, local.form_dict
	local.session = frappe._dict(session)
	frappe.set_user("Administrator")
	try:
		yield
	finally:
		local.session, local.form_dict = session, form_dict
		local.role_permissions, local.user_perms, local.new_doc_templates = {}, None, {}


def authorize(row):
	"""Tell the Payment Request it is paid, once, if the amount paid is the amount it asks for."""
	# Row lock: a Payment Entry made by hand at the same moment waits for this one, then sees it.
	frappe.db.get_value(PAYMENT_REQUEST, row.reference_name, "status", for_update=True)
	pr = frappe.get_doc(PAYMENT_REQUEST, row.reference_name)
	if pr.docstatus != 1 or pr.status in ("Paid", "Cancelled"):
		return _("Not authorized: Payment Request {0} is {1}").format(pr.name, _(pr.status))
	asked = pr.outstanding_amount if pr.get("outstanding_amount") is not None else pr.grand_total
	if not records.same_amount(row.amount, asked):
		return _("Not authorized: {0} was paid, Payment Request {1} asks for {2}").format(
			_kes(row.amount), pr.name, _kes(asked)
		)
	# The gateway contract: webshop, custom overrides and "On Payment Authorization" server scripts
	# react here.
	pr.run_method("on_payment_authorized", "Completed")
	return _("Authorized: {0}").format(record_payment(pr, row))


def record_payment(pr, row):
	"""The Payment Entry for an authorized Payment Request, unless something already recorded it.

	ERPNext v15's Payment Request has no ``on_payment_authorized`` of its own (webshop adds one),
	so the contract call alone records nothing there; and its Phone ``set_as_paid`` only marks the
	request Paid, which suits a POS Invoice (it carries its payments) but leaves a Sales Invoice or
	Order unpaid.
	"""
	pr.reload()
	entry = frappe.db.get_value(
		"Payment Entry Reference", {"payment_request": pr.name, "docstatus": 1}, "parent"
	)
	if entry:
		return _("Payment Entry {0}").format(entry)
	if pr.reference_doctype == "POS Invoice":
		if pr.status != "Paid":
			pr.set_as_paid()
		return _("Payment Request {0} Paid").format(pr.name)
	payment_entry = pr.create_payment_entry(submit=False)
	# The receipt is the reference a bank reconciliation looks for; a query-settled push has none
	# yet, and the Express Request's name finds it then.
	payment_entry.reference_no = row.receipt_number or row.name
	payment_entry.flags.ignore_permissions = True
	payment_entry.insert()
	payment_entry.submit()
	return _("Payment Entry {0}").format(payment_entry.name)


def _kes(amount):
	return f"KES {flt(amount):,.2f}"


def _set_outcome(name, note):
	frappe.db.set_value(EXPRESS, name, "reference_outcome", note, update_modified=False)
	return note

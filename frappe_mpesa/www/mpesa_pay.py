"""/mpesa-pay?token=...: pay a Sales Invoice by M-Pesa from a payment link (erpnext.checkout).

Shows only the business name, the amount left to pay and the reference; the push and its status
go through the guest methods ``link_push`` and ``link_status``, which check the token again."""

import frappe
from frappe import _

no_cache = 1


def get_context(context):
	context.no_cache = 1
	context.title = _("Pay with M-Pesa")
	context.token = frappe.form_dict.get("token") or ""
	context.error = None
	context.link = None
	if "erpnext" not in frappe.get_installed_apps():
		context.error = _("Payment links need ERPNext")
		return context
	from frappe_mpesa.erpnext import checkout

	try:
		doc, _nonce = checkout.link_document(context.token)
		context.link = checkout.link_view(doc)
	except frappe.ValidationError as error:
		frappe.clear_messages()
		context.error = str(error)
	return context

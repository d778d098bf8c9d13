# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import cint

from frappe_mpesa import callbacks, payment_requests, remote, settings_store, urls

CREDENTIAL_FIELDS = ("consumer_key", "consumer_secret", "environment")


def default_base_url():
	"""The site's own address, from configuration (never from a request's Host header)."""
	host = (frappe.conf.get("host_name") or "").strip()
	if host.startswith("https://"):
		return host.rstrip("/")
	return f"https://{frappe.local.site}"


def changed_password(value):
	# An unchanged Password field holds asterisks; anything else is a new value being saved.
	return bool(value) and set(value) != {"*"}


class MpesaSettings(Document):
	def onload(self):
		# How the last verified callback reached the app server; the form warns about a bad setup.
		self.set_onload("callback_transport", callbacks.last_transport(self.name))

	def before_validate(self):
		if not self.callback_base_url:
			self.callback_base_url = default_base_url()
		if not self.callback_id:
			self.callback_id = settings_store.new_callback_id()
		if not self.callback_secret:
			self.callback_secret = settings_store.new_callback_secret()
		if not self.callback_allowlist and self.allowlist_mode != remote.OFF:
			self.callback_allowlist = remote.DEFAULT_ALLOWLIST

	def validate(self):
		# Frappe replaces a newly typed Password with asterisks after validate and before
		# on_update: remember now whether a new consumer secret was typed.
		self.flags.consumer_secret_changed = changed_password(self.consumer_secret)
		for fieldname in ("business_shortcode", "till_number", "initiator_shortcode"):
			value = (self.get(fieldname) or "").strip()
			if value and not (value.isdigit() and 5 <= len(value) <= 7):
				frappe.throw(_("{0} must be 5 to 7 digits").format(self.meta.get_label(fieldname)))
			self.set(fieldname, value or None)
		if self.transaction_type == "BuyGoods" and not self.till_number:
			frappe.throw(_("A Buy Goods account needs its Till Number"))
		other = frappe.db.get_value(
			"Mpesa Settings", {"business_shortcode": self.business_shortcode, "name": ("!=", self.name)}
		)
		if other:
			frappe.throw(
				_("Shortcode {0} already has Mpesa Settings: {1}").format(self.business_shortcode, other)
			)
		try:
			self.callback_base_url = urls.check_base_url(self.callback_base_url)
			remote.parse_allowlist(self.callback_allowlist)
		except ValueError as error:
			frappe.throw(str(error))
		if cint(self.proxy_hops) < 1:
			self.proxy_hops = 1
		self.client_ip_header = (self.client_ip_header or "").strip()

	def on_update(self):
		settings_store.forget_client(self.name)
		before = self.get_doc_before_save()
		# Without validate (flags.ignore_validate) the secret may have changed: assume it did.
		credentials_changed = self.flags.get("consumer_secret_changed", True) or (
			before is not None and any(before.get(f) != self.get(f) for f in ("consumer_key", "environment"))
		)
		if credentials_changed:
			# A token belongs to the key and host it was issued for.
			settings_store.TokenStore(self.name).forget()
			self.db_set({"token_expires_at": 0}, update_modified=False)
		# frappe/payments: the Payment Gateway record ERPNext's Payment Requests reach this record by.
		payment_requests.ensure_gateway(self.name)

	# The payment gateway contract of frappe/payments, which ERPNext's Payment Request calls
	# (payments' own Mpesa Settings controller is replaced by this one: see install.py).

	def validate_transaction_currency(self, currency):
		payment_requests.validate_transaction_currency(currency)

	def request_for_payment(self, **kwargs):
		return payment_requests.request_for_payment(self, **kwargs)

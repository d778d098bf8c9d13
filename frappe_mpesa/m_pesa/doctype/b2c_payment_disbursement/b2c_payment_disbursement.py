# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

import uuid

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import flt

from frappe_mpesa import daraja
from frappe_mpesa.settings_store import require_roles

APPROVER_ROLES = ("Accounts Manager",)


class B2CPaymentDisbursement(Document):
	def validate(self):
		try:
			self.phone = daraja.normalize_phone(self.phone)
		except daraja.ValidationError as error:
			frappe.throw(_("Invalid payee phone: {0}").format(error))
		amount = flt(self.amount)
		if amount < 1 or amount != int(amount):
			frappe.throw(_("Amount must be a whole number of shillings, at least 1"))
		limit = flt(frappe.db.get_value("Mpesa Settings", self.mpesa_settings, "transaction_limit"))
		if limit and amount > limit:
			frappe.throw(_("Amount {0} is above the transaction limit of {1}").format(amount, limit))
		if not 2 <= len((self.remarks or "").strip()) <= 100:
			frappe.throw(_("Remarks must be 2 to 100 characters"))
		if len(self.occasion or "") > 100:
			frappe.throw(_("Occasion must be at most 100 characters"))
		if self.docstatus == 0:
			self.status = "Draft"

	def check_approver(self, action):
		"""Maker is not checker: only an approver role, and never the person who drafted it."""
		require_roles(APPROVER_ROLES)
		if frappe.session.user == self.owner:
			frappe.throw(
				_("You drafted this disbursement; another Accounts Manager must {0} it").format(_(action)),
				frappe.PermissionError,
			)

	def before_submit(self):
		self.check_approver("submit")
		self.approved_by = frappe.session.user
		self.status = "Queued"
		# Ours, not Daraja's: committed with the submission, before any request is sent, so a
		# result can always be matched and a retry is recognisable as the same payment.
		self.originator_conversation_id = str(uuid.uuid4())

	def on_submit(self):
		frappe.enqueue(
			"frappe_mpesa.initiator.send_disbursement",
			name=self.name,
			queue="short",
			enqueue_after_commit=True,
		)

	def before_cancel(self):
		self.check_approver("cancel")
		if self.status != "Failed":
			frappe.throw(
				_("Only a Failed disbursement can be cancelled: this one is {0}.").format(_(self.status))
				+ " "
				+ _("Money that was sent is returned with a reversal.")
			)

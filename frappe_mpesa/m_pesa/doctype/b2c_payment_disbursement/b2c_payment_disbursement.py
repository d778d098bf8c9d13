# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

import uuid

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import flt

from frappe_mpesa import daraja, guards
from frappe_mpesa.initiator import approval_digest
from frappe_mpesa.settings_store import require_roles

APPROVER_ROLES = ("Accounts Manager",)
# The state machine, the approval and Daraja's answers: written only by the app's own code
# (db_set under a row lock), never through a save. A user who could set them could send a
# payment twice (status back to Queued) or cancel a paid one (Completed to Failed).
APP_FIELDS = (
	"status",
	"approved_by",
	"payee_set_by",
	"approval_digest",
	"originator_conversation_id",
	"conversation_id",
	"transaction_receipt",
	"receiver_name",
	"result_code",
	"result_desc",
	"request_sent_on",
	"completed_on",
	"last_status_query",
	"error",
)
# What decides where the money goes and how much: whoever last set one of these is a maker.
PAYEE_FIELDS = ("mpesa_settings", "phone", "amount", "command_id")
NEW = {"status": "Draft"}


class B2CPaymentDisbursement(Document):
	def validate(self):
		if self.is_new() and not self.status:
			self.status = "Draft"
		guards.refuse_changes(self, APP_FIELDS, NEW)
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
		# Compared with the stored row, after the phone is normalized: the same payee written
		# another way is no change.
		if self.is_new() or guards.changed(self, PAYEE_FIELDS):
			self.payee_set_by = frappe.session.user

	def makers(self):
		"""Who may not approve: the creator and whoever last set the payee, phone or amount. A record
		from before payee_set_by existed counts its last editor as that person."""
		before = self.get_doc_before_save()
		last = self.payee_set_by or (before.modified_by if before else frappe.session.user)
		return {self.owner, last}

	def check_approver(self, action):
		"""Maker is not checker: only an approver role, and never a maker."""
		require_roles(APPROVER_ROLES)
		if frappe.session.user in self.makers():
			frappe.throw(
				_(
					"You created this disbursement or set its payee or amount; another Accounts Manager must {0} it"
				).format(_(action)),
				frappe.PermissionError,
			)

	def before_submit(self):
		self.check_approver("submit")
		self.approved_by = frappe.session.user
		self.status = "Queued"
		# Ours, not Daraja's: committed with the submission, before any request is sent, so a
		# result can always be matched and a retry is recognisable as the same payment.
		self.originator_conversation_id = str(uuid.uuid4())
		# Seals what was approved: the job sends only a row that still matches it.
		self.approval_digest = approval_digest(self)

	def on_submit(self):
		frappe.enqueue(
			"frappe_mpesa.initiator.send_disbursement",
			name=self.name,
			queue="short",
			enqueue_after_commit=True,
		)

	def before_update_after_submit(self):
		# Frappe refuses fields that are not allow_on_submit (none here); this holds even if one is
		# made so by a customization.
		guards.refuse_changes(self, APP_FIELDS + PAYEE_FIELDS)

	def before_cancel(self):
		# A cancel from Desk's form carries the browser's copy, and Frappe writes it as it is.
		guards.refuse_changes(self, APP_FIELDS + PAYEE_FIELDS)
		self.check_approver("cancel")
		if self.status != "Failed":
			frappe.throw(
				_("Only a Failed disbursement can be cancelled: this one is {0}.").format(_(self.status))
				+ " "
				+ _("Money that was sent is returned with a reversal.")
			)

# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""A B2C batch: one or more payees, each its own B2C request with its own OriginatorConversationID
and status (the child rows); the batch's status and totals aggregate theirs.

The guarantees of a single disbursement hold for every row: what the app writes is refused on a
user's save, states only move forward (records.py, initiator.py), each row's id is committed
before its request, maker is not checker (the batch's creator and whoever last set any payee's
phone or amount cannot approve), the approval is sealed per row, and nothing ever Sent is sent
again.
"""

import uuid

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import cint, flt

from frappe_mpesa import daraja, guards, payees
from frappe_mpesa.initiator import approval_digest, batch_digest
from frappe_mpesa.m_pesa.doctype.b2c_disbursement_payee.b2c_disbursement_payee import DARAJA_FIELDS
from frappe_mpesa.settings_store import require_roles

APPROVER_ROLES = ("Accounts Manager",)
PAYEE_DOCTYPE = "B2C Disbursement Payee"
# The batch's state, approval and totals: written only by the app's own code (db_set / set_value
# under a row lock), never through a save.
APP_FIELDS = (
	"status",
	"approved_by",
	"payee_set_by",
	"approval_digest",
	"error",
	"total_amount",
	"payee_count",
	"completed_amount",
	"total_charges",
	"completed_count",
	"failed_count",
	"unknown_count",
	"in_flight_count",
	"balance_warning",
)
# Each payee's state machine and Daraja's answers. A user who could set them could send a payment
# twice (status back to Queued) or cancel a paid one (Completed to Failed).
ROW_APP_FIELDS = (
	"status",
	"payee_set_by",
	"approval_digest",
	*DARAJA_FIELDS,
	"failure_confirmed",
	"retry_of",
	"retried",
	"charges",
	"ledger_entry_type",
	"ledger_entry",
	"error",
)
# What decides where the money goes and how much: whoever last set one of these is a maker.
PAYEE_FIELDS = ("mpesa_settings", "command_id")
ROW_PAYEE_FIELDS = (
	"phone",
	"amount",
	"party_type",
	"party",
	"reference_doctype",
	"reference_name",
	"payout_kind",
	"party_shortcode",
	"account_reference",
)
NEW = {"status": "Draft"}
NEW_ROW = {"status": "Queued"}
# B2C pays from the shortcode's Utility Account (Daraja's B2C results report it, as the sandbox
# does: B2CUtilityAccountAvailableFunds).
FUNDING_ACCOUNT = "Utility Account"


def row_changed(row, stored, fieldnames, defaults):
	"""The fields among ``fieldnames`` whose value on child ``row`` differs from ``stored`` (or
	``defaults`` for a new row)."""
	get = stored.get if stored is not None else defaults.get
	return [
		fieldname
		for fieldname in fieldnames
		if guards.comparable(row, fieldname, row.get(fieldname))
		!= guards.comparable(row, fieldname, get(fieldname))
	]


class B2CPaymentDisbursement(Document):
	def stored(self):
		"""The batch as stored (None for a new one)."""
		if self.is_new():
			return None
		return self.get_doc_before_save() or frappe.get_doc(self.doctype, self.name, for_update=True)

	def stored_rows(self):
		before = self.stored()
		return {row.name: row for row in before.payees} if before is not None else {}

	def refuse_row_changes(self, fieldnames, allow_new=True):
		stored = self.stored_rows()
		for row in self.payees:
			before = stored.get(row.name)
			if before is None and not allow_new:
				frappe.throw(_("Payees cannot be added after approval"), frappe.PermissionError)
			if before is not None:
				# A row sent without an app field (a REST client's partial row) keeps the stored value.
				for fieldname in fieldnames:
					if row.get(fieldname) in (None, "") and before.get(fieldname) not in (None, ""):
						row.set(fieldname, before.get(fieldname))
			fields = row_changed(row, before, fieldnames, NEW_ROW)
			if fields:
				label = row.meta.get_field(fields[0]).label or fields[0]
				frappe.throw(
					_("Payee row {0}: {1} is written only by the app, never by a user").format(row.idx, _(label)),
					frappe.PermissionError,
				)
		if not allow_new and len(stored) != len(self.payees):
			frappe.throw(_("Payees cannot be removed after approval"), frappe.PermissionError)

	def validate(self):
		if self.is_new() and not self.status:
			self.status = "Draft"
		guards.refuse_changes(self, APP_FIELDS, NEW)
		self.refuse_row_changes(ROW_APP_FIELDS)
		self.import_payee_file()
		if not 2 <= len((self.remarks or "").strip()) <= 100:
			frappe.throw(_("Remarks must be 2 to 100 characters"))
		if len(self.occasion or "") > 100:
			frappe.throw(_("Occasion must be at most 100 characters"))
		if not self.payees:
			frappe.throw(_("Add at least one payee, or attach a payees CSV"))
		limit = flt(frappe.db.get_value("Mpesa Settings", self.mpesa_settings, "transaction_limit"))
		for row in self.payees:
			self.check_row(row, limit)
		self.total_amount = sum(cint(row.amount) for row in self.payees)
		self.payee_count = len(self.payees)
		self.set_makers()
		self.balance_warning = self.check_balance()

	def check_row(self, row, limit):
		"""One payee, checked with the core's rules; the error names the row."""

		def fail(message):
			frappe.throw(_("Payee row {0}: {1}").format(row.idx, message))

		row.payout_kind = row.payout_kind or payees.B2C
		if row.payout_kind not in payees.KINDS:
			fail(_("kind {0} is not one of {1}").format(row.payout_kind, ", ".join(payees.KINDS)))
		if row.payout_kind == payees.B2C:
			try:
				row.phone = daraja.normalize_phone(row.phone or "")
			except daraja.ValidationError as error:
				fail(_("{0} is not a Kenyan mobile number ({1})").format(repr(row.phone or ""), error))
		else:
			self.check_business_row(row, fail)
		try:
			row.amount = payees.whole_shillings(
				row.amount,
				minimum=10 if row.payout_kind == payees.B2C else 1,
				maximum=int(limit) if limit else 250_000,
			)
		except ValueError as error:
			fail(_("amount {0}").format(error))
		if row.remarks and not 2 <= len(row.remarks.strip()) <= 100:
			fail(_("remarks must be 2 to 100 characters"))
		for kind_field, name_field in (("party_type", "party"), ("reference_doctype", "reference_name")):
			kind, name = row.get(kind_field), row.get(name_field)
			if name and not kind:
				fail(_("{0} is set without its type").format(name))
			if kind and not frappe.db.exists("DocType", kind):
				fail(_("{0} needs ERPNext (or HRMS) on this site").format(_(kind)))

	@staticmethod
	def check_business_row(row, fail):
		"""A B2B or tax row: the paybill or till and its account, or KRA's shortcode and the PRN."""
		row.phone = None
		if row.payout_kind == payees.TAX:
			row.party_shortcode = payees.KRA_SHORTCODE
			try:
				row.account_reference = payees.prn(row.account_reference)
			except ValueError as error:
				fail(_("PRN {0}").format(error))
			return
		try:
			row.party_shortcode = payees.shortcode(row.party_shortcode)
		except ValueError as error:
			fail(_("Paybill or Till {0}").format(error))
		try:
			row.account_reference = payees.account_reference(
				row.account_reference, required=row.payout_kind == payees.PAYBILL
			)
		except ValueError as error:
			fail(_("Account Reference {0}").format(error))

	def set_makers(self):
		"""Whoever sets a payee (new, or its phone, amount, party or document changed) is that row's
		maker, and the batch's last maker; compared after normalizing, so the same payee written
		another way is no change."""
		user = frappe.session.user
		stored = self.stored_rows()
		touched = self.is_new() or bool(guards.changed(self, PAYEE_FIELDS))
		for row in self.payees:
			before = stored.get(row.name)
			if before is None or row_changed(row, before, ROW_PAYEE_FIELDS, {}):
				row.payee_set_by = user
				touched = True
		if len(stored) != len(self.payees) or set(stored) - {row.name for row in self.payees}:
			touched = True
		if touched:
			self.payee_set_by = user

	def import_payee_file(self):
		"""An attached CSV (newly attached, or changed) replaces the payees: every row is checked,
		and one bad row imports nothing."""
		if not self.payee_file:
			return
		before = self.stored()
		if before is not None and before.payee_file == self.payee_file:
			return
		file_name = frappe.db.get_value("File", {"file_url": self.payee_file}, "name")
		if not file_name:
			frappe.throw(_("The payees file {0} is missing").format(self.payee_file))
		content = frappe.get_doc("File", file_name).get_content()
		self.set_payees_from_csv(content.encode() if isinstance(content, str) else content)

	def set_payees_from_csv(self, content):
		limit = flt(frappe.db.get_value("Mpesa Settings", self.mpesa_settings, "transaction_limit"))
		try:
			found = payees.read_csv(content, maximum=int(limit) if limit else 250_000, remarks_default="")
		except payees.PayeeError as error:
			frappe.throw(_("Payees CSV: {0}. Nothing was imported.").format(error), title=_("Payees CSV"))
		self.set("payees", [])
		for payee in found:
			self.append(
				"payees",
				{
					"phone": payee.phone,
					"amount": payee.amount,
					"payee_name": payee.name,
					"remarks": payee.remarks or None,
				},
			)

	def check_balance(self):
		"""A warning when the batch is larger than the last known balance of the account B2C pays from."""
		available = last_known_balance(self.mpesa_settings)
		if available is None or flt(self.total_amount) <= available:
			return None
		return _("This batch ({0}) is larger than the last known {1} balance ({2}).").format(
			flt(self.total_amount), _(FUNDING_ACCOUNT), available
		)

	def makers(self):
		"""Who may not approve: the creator, and whoever last set the batch's settings or any payee's
		phone, amount, party or document."""
		before = self.get_doc_before_save()
		last = self.payee_set_by or (before.modified_by if before else frappe.session.user)
		return {self.owner, last} | {row.payee_set_by for row in self.payees if row.payee_set_by}

	def check_approver(self, action):
		"""Maker is not checker: only an approver role, and never a maker."""
		require_roles(APPROVER_ROLES)
		if frappe.session.user in self.makers():
			frappe.throw(
				_(
					"You created this disbursement or set a payee's phone or amount; another Accounts Manager must {0} it"
				).format(_(action)),
				frappe.PermissionError,
			)

	def before_submit(self):
		self.check_approver("submit")
		self.approved_by = frappe.session.user
		self.status = "Queued"
		self.in_flight_count = len(self.payees)
		for row in self.payees:
			row.status = "Queued"
			# Ours, not Daraja's: committed with the submission, before any request is sent, so a
			# result can always be matched and a retry is recognisable as the same payment.
			row.originator_conversation_id = str(uuid.uuid4())
			row.remarks = (row.remarks or "").strip() or self.remarks
			# Seals what was approved: the job sends only a row that still matches it.
			row.approval_digest = approval_digest(row_facts(self, row))
		self.approval_digest = batch_digest(self)

	def on_submit(self):
		frappe.enqueue(
			"frappe_mpesa.initiator.send_batch",
			name=self.name,
			queue="long",
			timeout=3600,
			enqueue_after_commit=True,
		)

	def before_update_after_submit(self):
		# Frappe refuses fields that are not allow_on_submit (none here); this holds even if one is
		# made so by a customization.
		guards.refuse_changes(self, APP_FIELDS + PAYEE_FIELDS)
		self.refuse_row_changes(ROW_APP_FIELDS + ROW_PAYEE_FIELDS, allow_new=False)

	def before_cancel(self):
		# A cancel from Desk's form carries the browser's copy, and Frappe writes it as it is.
		guards.refuse_changes(self, APP_FIELDS + PAYEE_FIELDS)
		self.refuse_row_changes(ROW_APP_FIELDS + ROW_PAYEE_FIELDS, allow_new=False)
		self.check_approver("cancel")
		if any(row.status != "Failed" for row in self.payees):
			frappe.throw(
				_("Only a disbursement whose every payee Failed can be cancelled: this one is {0}.").format(
					_(self.status)
				)
				+ " "
				+ _("Money that was sent is returned with a reversal.")
			)


def row_facts(batch, row):
	"""What one row's approval covers, as ``approval_digest`` reads it."""
	return frappe._dict(
		name=row.name,
		parent=batch.name,
		mpesa_settings=batch.mpesa_settings,
		phone=row.phone,
		amount=row.amount,
		command_id=batch.command_id,
		payout_kind=row.payout_kind,
		party_shortcode=row.party_shortcode,
		account_reference=row.account_reference,
		approved_by=batch.approved_by,
		originator_conversation_id=row.originator_conversation_id,
	)


def last_known_balance(settings_name):
	"""The available funds of the B2C account in the latest completed Account Balance result, or None."""
	request = frappe.get_all(
		"Mpesa Initiator Request",
		filters={"mpesa_settings": settings_name, "request_type": "Account Balance", "status": "Completed"},
		pluck="name",
		order_by="completed_on desc, creation desc",
		limit=1,
	)
	if not request:
		return None
	value = frappe.db.get_value(
		"Mpesa Account Balance", {"parent": request[0], "account": FUNDING_ACCOUNT}, "available"
	)
	return None if value is None else flt(value)


@frappe.whitelist()
def batch_from_csv(mpesa_settings, remarks, command_id="BusinessPayment", content=None, file_url=None):
	"""A draft batch made from a payees CSV (the text, or an uploaded File's URL); nothing is made
	when any row is bad, and the error names it."""
	frappe.has_permission("B2C Payment Disbursement", "create", throw=True)
	doc = frappe.get_doc(
		{
			"doctype": "B2C Payment Disbursement",
			"mpesa_settings": mpesa_settings,
			"command_id": command_id,
			"remarks": remarks,
		}
	)
	if file_url:
		doc.payee_file = file_url
	else:
		doc.set_payees_from_csv(content.encode() if isinstance(content, str) else content or b"")
	doc.insert()
	return doc.name


@frappe.whitelist()
def retry_failed(name):
	"""Retry the batch's Failed payees whose failure Daraja confirmed (see initiator.retry_failed)."""
	from frappe_mpesa import initiator

	return initiator.retry_failed(name)


@frappe.whitelist()
def query_unresolved(name):
	"""A Transaction Status query now for each of the batch's payees that was sent and is unsettled."""
	from frappe_mpesa import initiator

	require_roles(APPROVER_ROLES)
	frappe.has_permission("B2C Payment Disbursement", "read", doc=name, throw=True)
	return initiator.resolve_payees(
		filters={"parent": name, "docstatus": 1, "status": ("in", ("Sent", "Unknown")), "request_sent_on": ("is", "set")},
		limit=1000,
	)

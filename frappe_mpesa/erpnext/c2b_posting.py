"""A recorded C2B payment matched and posted as one submitted Payment Entry, in a job.

``records`` inserts the register row in the confirmation's request; the row's ``after_insert``
(doc_events) queues ``post_receipt`` to run once that transaction has committed, so Daraja's
answer never waits for the books. A sweep (``post_pending``, every five minutes) posts any row
whose job was lost.

Exactly once, whatever brings the receipt (duplicate callbacks, job retries, the sweep, a pull or a
statement import inserting the row): the job locks the register row (SELECT ... FOR UPDATE) and
does nothing if the row already has a Payment Entry or was processed before; the Payment Entry is
made, submitted and linked in that one transaction; and the link has a unique index, so no
Payment Entry can serve two receipts. A failure rolls the entry back and leaves a note on the row.

What the entry is for: an invoice matched by the account number is paid up to its outstanding
amount; a Customer (or a document naming one) gets its open invoices paid oldest due date first
(``allocation.allocate``); a Sales Order gets an advance against it. Whatever is left over stays
unallocated on the entry, an advance of the customer's. A receipt is processed automatically only
once: after its entry is cancelled, a person re-posts it (``repost``) or allocates it by hand.
"""

from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo

import frappe
from frappe import _
from frappe.utils import flt, get_system_timezone, now_datetime

from frappe_mpesa import allocation, matching, records
from frappe_mpesa.erpnext import (
	C2B,
	MATCHED,
	PARTLY,
	POSTED,
	SETTINGS,
	UNMATCHED,
	active,
	matching_rules,
	payment_entry,
)

NAIROBI = ZoneInfo("Africa/Nairobi")
QUEUE = "short"
JOB_TIMEOUT = 120
DRAIN_TIMEOUT = 1800
INVOICE, ORDER, POS_INVOICE, CUSTOMER = "Sales Invoice", "Sales Order", "POS Invoice", "Customer"
ACCOUNTS_MANAGER = ("Accounts Manager", "System Manager")
FIELDS = [
	"name",
	"status",
	"payment_entry",
	"processed_on",
	"mpesa_settings",
	"trans_amount",
	"trans_time",
	"bill_ref_number",
	"msisdn",
	"first_name",
	"middle_name",
	"last_name",
	"reference_doctype",
	"reference_name",
]


NotPosted = payment_entry.NotPosted


# ---- queueing ---------------------------------------------------------------------------


# Set while a drain job is queued and not yet started (a raw Redis key: wrap with make_key).
DRAIN_QUEUED = "frappe_mpesa:c2b-drain-queued"
DRAIN_FLAG_TTL = 60
DRAIN_BATCH = 100


def on_register_insert(doc, method=None):
	"""doc_events after_insert: have the new receipt posted once its transaction has committed."""
	if active():
		frappe.db.after_commit.add(request_drain)


def request_drain():
	"""Queue one ``drain`` job unless one is already queued and not yet started: that one will
	see this receipt, committed before it starts. A burst of a thousand confirmations so makes a
	handful of jobs, not a thousand, each posting every receipt waiting in one warm process.

	After the commit, so a failure here (Redis down) must not fail the callback that already
	recorded the payment: the sweep (``post_pending``) posts the row instead. A flag left by a lost
	job expires after DRAIN_FLAG_TTL seconds; a job queued twice only finds nothing left to do."""
	try:
		key = frappe.cache.make_key(DRAIN_QUEUED)
		if not frappe.cache.set(key, 1, nx=True, ex=DRAIN_FLAG_TTL):
			return
		frappe.enqueue(
			"frappe_mpesa.erpnext.c2b_posting.drain",
			queue=QUEUE,
			timeout=DRAIN_TIMEOUT,
		)
	except Exception:
		frappe.logger("frappe_mpesa").warning("C2B posting not queued; the sweep will post the receipts")


def drain():
	"""The job: post every receipt not processed yet, oldest first, until none is left. The flag
	is cleared first, so a receipt committed from now on queues the next job."""
	try:
		frappe.cache.delete(frappe.cache.make_key(DRAIN_QUEUED))
	except Exception:
		pass
	return post_pending(limit=None)


def enqueue_posting(trans_id):
	"""Queue ``post_receipt`` for one receipt (a person's re-post, or code that wants just one)."""
	try:
		frappe.enqueue(
			"frappe_mpesa.erpnext.c2b_posting.post_receipt",
			queue=QUEUE,
			timeout=JOB_TIMEOUT,
			trans_id=trans_id,
		)
	except Exception:
		frappe.logger("frappe_mpesa").warning(f"C2B {trans_id}: posting not queued; the sweep will post it")


def post_pending(limit=200):
	"""Post rows never processed, oldest first, committing after each; ``limit`` rows at most
	(None: until none is left). A row whose posting raised is rolled back, logged and not tried
	again by this call (the next sweep tries it). Returns how many were tried."""
	if not active():
		return 0
	tried = set()  # a row left unprocessed (it raised, or is not for posting) is not tried twice
	while limit is None or len(tried) < limit:
		batch = DRAIN_BATCH if limit is None else min(DRAIN_BATCH, limit - len(tried))
		names = [
			name
			for name in frappe.get_all(
				C2B,
				filters={"processed_on": ("is", "not set")},
				pluck="name",
				order_by="creation asc",
				limit=batch + len(tried),
			)
			if name not in tried
		][:batch]
		if not names:
			break
		for name in names:
			tried.add(name)
			try:
				post_receipt(name)
				frappe.db.commit()
			except Exception:
				frappe.db.rollback()
				frappe.log_error(title=f"M-Pesa: posting C2B {name} failed")
				frappe.db.commit()
	return len(tried)


@frappe.whitelist(methods=["POST"])
def repost(trans_id):
	"""Match and post a receipt again (after its entry was cancelled, or the books were set up)."""
	from frappe_mpesa.settings_store import require_roles

	require_roles(ACCOUNTS_MANAGER)
	return post_receipt(trans_id, force=True)


# ---- the job ----------------------------------------------------------------------------


def post_receipt(trans_id, force=False):
	"""Match the receipt and post its Payment Entry, once; returns the row's status. Commits
	nothing: the job (or the caller) commits, which also releases the row lock."""
	if not active():
		return None
	from frappe_mpesa.payment_requests import as_administrator

	# Jobs run as the user who queued them: Guest, for a callback.
	with as_administrator():
		return _post(trans_id, force)


def _post(trans_id, force):
	row = records.lock_row(C2B, "name", trans_id, FIELDS)
	if not row:
		return None
	if row.payment_entry or row.status not in (UNMATCHED, MATCHED) or (row.processed_on and not force):
		return row.status
	settings = frappe.get_doc(SETTINGS, row.mpesa_settings)
	values = {"processed_on": now_datetime()}
	found = matching_rules.find(settings, row.bill_ref_number, row.msisdn)
	if found is None and row.reference_doctype and row.reference_name:
		found = matching.Match(matching.Rule(row.reference_doctype), row.reference_name)
	if found is None:
		values.update(status=UNMATCHED, posting_note=_("No document matches account number {0}").format(
			row.bill_ref_number or _("(none)")
		))
		return _write(trans_id, values)
	customer = matching_rules.customer_of(found.rule.doctype, found.name)
	values.update(
		status=MATCHED, reference_doctype=found.rule.doctype, reference_name=found.name, customer=customer
	)
	frappe.db.savepoint("frappe_mpesa_post")
	try:
		if not customer:
			raise NotPosted(_("{0} {1} names no Customer").format(_(found.rule.doctype), found.name))
		entry = make_payment_entry(settings, row, found, customer)
	except Exception as error:
		frappe.db.rollback(save_point="frappe_mpesa_post")
		if not isinstance(error, NotPosted | frappe.ValidationError):
			frappe.log_error(title=f"M-Pesa: posting C2B {trans_id} failed")
		values["posting_note"] = _("Not posted: {0}").format(str(error) or type(error).__name__)
		return _write(trans_id, values)
	values.update(
		payment_entry=entry.name,
		status=POSTED if flt(entry.unallocated_amount) == 0 else PARTLY,
		posting_note=_("Payment Entry {0}").format(entry.name)
		+ (
			_(", {0} unallocated").format(flt(entry.unallocated_amount))
			if flt(entry.unallocated_amount)
			else ""
		),
	)
	return _write(trans_id, values)


def _write(trans_id, values):
	frappe.db.set_value(C2B, trans_id, values, update_modified=False)
	return values.get("status")


# ---- the Payment Entry --------------------------------------------------------------------


def nairobi_datetime(value):
	"""A register time (the site's naive local time) as Nairobi's."""
	if not isinstance(value, datetime):
		value = frappe.utils.get_datetime(value)
	return value.replace(tzinfo=ZoneInfo(get_system_timezone())).astimezone(NAIROBI).replace(tzinfo=None)


def payer_name(row):
	return " ".join(part for part in (row.first_name, row.middle_name, row.last_name) if part) or _("unknown")


def make_payment_entry(settings, row, found, customer, items=None):
	"""The receipt's Payment Entry, built, inserted and submitted by ``payment_entry.build`` (the
	caller holds the row lock). ``items`` (allocation.OpenItems, each up to the amount a person
	chose) replaces what ``found`` would pay."""
	when = nairobi_datetime(row.trans_time or now_datetime())

	def pays(party_account):
		if items is not None:
			return items
		return open_items(found, customer, settings.get("company"), party_account, settings)

	return payment_entry.build(
		settings,
		allocation.money(row.trans_amount, what="TransAmount"),
		when.date(),
		customer,
		pays,
		reference_no=row.name,
		remarks=_("M-Pesa {0} from {1}, account number {2}, {3}").format(
			row.name, payer_name(row), row.bill_ref_number or "-", when.strftime("%Y-%m-%d %H:%M")
		),
	)


def open_items(found, customer, company, party_account, settings):
	"""What the receipt may pay, as allocation.OpenItems: the matched invoice or order, or the
	customer's open invoices. Raises NotPosted when the matched document can't take it."""
	doctype, name = found.rule.doctype, found.name
	if doctype == POS_INVOICE:
		consolidated = frappe.db.get_value(POS_INVOICE, name, "consolidated_invoice")
		if not consolidated:
			raise NotPosted(_("POS Invoice {0} is not consolidated into a Sales Invoice yet").format(name))
		doctype, name = INVOICE, consolidated
	if doctype == INVOICE:
		return document_items(INVOICE, name, settings)
	if doctype == ORDER:
		return document_items(ORDER, name, settings)
	return customer_invoices(customer, company, party_account)


def document_items(doctype, name, settings):
	target = matching_rules.target(matching.Match(matching.Rule(doctype), name))
	if target.docstatus != 1 or not target.outstanding or target.outstanding <= 0:
		state = {2: _("cancelled"), 0: _("not submitted")}.get(target.docstatus, _("paid"))
		if not settings.get("c2b_allow_advances"):
			raise NotPosted(_("{0} {1} is {2} and this shortcode takes no advances").format(_(doctype), name, state))
		return []  # all of it an advance of the customer's
	dates = ("due_date", "posting_date") if doctype == INVOICE else ("delivery_date", "transaction_date")
	due, posted = frappe.db.get_value(doctype, name, dates)
	return [allocation.OpenItem(name, target.outstanding, due, posted, doctype)]


def customer_invoices(customer, company, party_account):
	rows = frappe.get_all(
		INVOICE,
		filters={
			"customer": customer,
			"company": company,
			"debit_to": party_account,
			"docstatus": 1,
			"outstanding_amount": (">", 0),
		},
		fields=["name", "outstanding_amount", "due_date", "posting_date"],
	)
	return [
		allocation.OpenItem(row.name, allocation.money(row.outstanding_amount), row.due_date, row.posting_date)
		for row in rows
	]

"""Requests made with the initiator's credentials (B2C, transaction status, balance, reversal).

Their outcome comes later to the result or timeout callback. Each is recorded before it is sent
and committed, so a callback always finds its record (or is kept until it does); a money-moving
request is never sent twice: the moment of sending is committed first, and a failure after
that is "Unknown", resolved by a Transaction Status query, never by sending again.
"""

import hashlib
import hmac
import uuid
from concurrent.futures import ThreadPoolExecutor

import frappe
from frappe import _
from frappe.utils import add_to_date, cint, flt, now_datetime
from frappe.utils.password import get_encryption_key

from frappe_mpesa import daraja, payees, records, settings_store, states
from frappe_mpesa.m_pesa.doctype.b2c_disbursement_payee.b2c_disbursement_payee import insert_row
from frappe_mpesa.settings_store import DarajaCallError, callback_url, get_settings, outcome_unknown

B2C = records.B2C
PAYEE = records.PAYEE
INITIATOR = records.INITIATOR

# Initiator request type -> the Client method and how to build its arguments.
METHODS = {
	"Transaction Status": "transaction_status",
	"Account Balance": "account_balance",
	"Reversal": "reversal",
}


def initiator_arguments(settings):
	return {
		"initiator_name": settings.initiator_name,
		"security_credential": settings_store.security_credential(settings),
		"result_url": callback_url(settings, "result"),
		"queue_timeout_url": callback_url(settings, "timeout"),
	}


def request_arguments(settings, request_type, transaction_id, original_conversation_id, amount, remarks):
	"""The Client method and its arguments for one status, balance or reversal request."""
	arguments = initiator_arguments(settings)
	party_a = settings_store.initiator_shortcode(settings)
	if request_type == "Transaction Status":
		arguments.update(
			party_a=party_a,
			transaction_id=transaction_id or None,
			original_conversation_id=original_conversation_id or None,
		)
	elif request_type == "Account Balance":
		arguments.update(party_a=party_a)
	else:
		arguments.update(
			transaction_id=transaction_id,
			amount=amount,
			receiver_party=party_a,
			remarks=remarks or "Reversal",
		)
	if remarks and request_type != "Reversal":
		arguments["remarks"] = remarks
	return METHODS[request_type], arguments


def record_request(settings, request_type, status, **values):
	"""Insert the Mpesa Initiator Request (the app's own insert) and commit it."""
	doc = frappe.get_doc(
		{
			"doctype": INITIATOR,
			"request_type": request_type,
			"mpesa_settings": settings.name,
			"status": status,
			"requested_by": frappe.session.user,
			**values,
		}
	)
	doc.flags.ignore_permissions = True
	doc.insert()
	frappe.db.commit()
	return doc.name


def start_request(
	settings_name,
	request_type,
	*,
	transaction_id=None,
	original_conversation_id=None,
	amount=None,
	remarks=None,
	reference_doctype=None,
	reference_name=None,
):
	"""Record and send a status or balance request; returns the record's name.

	Commits: the record must be visible to the callback's request before Daraja can answer. A
	reversal moves money and goes through request_reversal / approve_reversal instead.
	"""
	if request_type == "Reversal":
		frappe.throw(_("A reversal is requested first, then approved by another Accounts Manager"))
	settings = get_settings(settings_name)
	method, arguments = request_arguments(
		settings, request_type, transaction_id, original_conversation_id, amount, remarks
	)
	name = record_request(
		settings,
		request_type,
		"Queued",
		transaction_id=transaction_id,
		original_conversation_id=original_conversation_id,
		amount=amount,
		remarks=remarks,
		reference_doctype=reference_doctype,
		reference_name=reference_name,
		request_sent_on=now_datetime(),
	)
	return _send_request(settings, name, method, arguments)


def _send_request(settings, name, method, arguments):
	"""Send a recorded, committed request once and record Daraja's answer; returns ``name``."""
	try:
		answer = settings_store.call(settings, method, **arguments)
	except DarajaCallError as error:
		status = "Unknown" if outcome_unknown(error) else "Failed"
		frappe.db.set_value(INITIATOR, name, {"status": status, "error": str(error)})
		frappe.db.commit()
		raise
	ocid = answer.get("OriginatorConversationID") or None
	row = records.lock_row(INITIATOR, "name", name, ["status"])
	values = {
		"originator_conversation_id": ocid,
		"conversation_id": answer.get("ConversationID") or None,
		"result_desc": answer.get("ResponseDescription"),
	}
	if states.can_move(states.INITIATOR, row.status, "Sent"):
		values["status"] = "Sent"
	frappe.db.set_value(INITIATOR, name, values)
	frappe.db.commit()
	if ocid and records.match_unmatched(ocid):
		frappe.db.commit()
	return name


def request_reversal(settings_name, transaction_id, amount, remarks=None):
	"""Record a reversal for another Accounts Manager to approve; nothing is sent. Returns its name."""
	settings = get_settings(settings_name)
	# Built now so a reversal Daraja would refuse (a bad receipt, no certificate) fails before a
	# second person is asked to look at it.
	request_arguments(settings, "Reversal", transaction_id, None, amount, remarks)
	return record_request(
		settings,
		"Reversal",
		"Awaiting Approval",
		transaction_id=transaction_id,
		amount=amount,
		remarks=remarks or "Reversal",
	)


def _awaiting_reversal(name):
	"""The reversal ``name``, locked, if it still awaits approval; else throw."""
	row = records.lock_row(
		INITIATOR,
		"name",
		name,
		[
			"name",
			"status",
			"request_type",
			"requested_by",
			"owner",
			"mpesa_settings",
			"transaction_id",
			"amount",
			"remarks",
		],
	)
	if not row or row.request_type != "Reversal":
		frappe.throw(_("{0} is not a reversal request").format(name), frappe.DoesNotExistError)
	if row.status != "Awaiting Approval":
		frappe.throw(_("Reversal {0} is {1}, not awaiting approval").format(name, _(row.status)))
	return row


def approve_reversal(name):
	"""A second Accounts Manager approves a reversal; it is sent once, now. Returns its name."""
	row = _awaiting_reversal(name)
	user = frappe.session.user
	if user in (row.requested_by, row.owner):
		frappe.throw(
			_("You asked for this reversal; another Accounts Manager must approve it"), frappe.PermissionError
		)
	settings = get_settings(row.mpesa_settings)
	method, arguments = request_arguments(
		settings, "Reversal", row.transaction_id, None, row.amount, row.remarks
	)
	if not states.can_move(states.INITIATOR, row.status, "Queued"):
		frappe.throw(_("Reversal {0} cannot be approved now").format(name))
	# Committed before the request: approved once, sent once.
	frappe.db.set_value(
		INITIATOR, name, {"status": "Queued", "approved_by": user, "request_sent_on": now_datetime()}
	)
	frappe.db.commit()
	return _send_request(settings, name, method, arguments)


def reject_reversal(name):
	"""Close a reversal that is not to be sent (its requester or another Accounts Manager)."""
	_awaiting_reversal(name)
	frappe.db.set_value(INITIATOR, name, {"status": "Rejected", "approved_by": frappe.session.user})
	frappe.db.commit()
	return name


def approval_digest(row):
	"""What a B2C approver approved for one payee, sealed with the site's key: the row, its batch's
	settings and command, the payee, amount, approver and the row's OriginatorConversationID; for a
	B2B or tax row also its kind, the paybill or till and the account reference or PRN."""
	values = [
		row.name,
		row.mpesa_settings,
		row.phone,
		cint(flt(row.amount)),
		row.command_id,
		row.approved_by,
		row.originator_conversation_id,
	]
	if (row.get("payout_kind") or payees.B2C) != payees.B2C:
		# A B2C row's seal is as it was before other kinds existed, so rows sealed then still send.
		values += [row.payout_kind, row.party_shortcode, row.account_reference]
	message = "\0".join(str(value or "") for value in values)
	return hmac.new(get_encryption_key().encode(), message.encode(), hashlib.sha256).hexdigest()


def batch_digest(batch):
	"""The batch's seal: its settings, command and approver, and every row's own seal."""
	message = "\0".join(
		[batch.name, batch.mpesa_settings, batch.command_id, batch.approved_by or ""]
		+ sorted(row.approval_digest or "" for row in batch.payees)
	)
	return hmac.new(get_encryption_key().encode(), message.encode(), hashlib.sha256).hexdigest()


def ever_sent(row):
	"""True when anything shows a request may have gone out: the moment of sending (set once, never
	cleared by the app), Daraja's answer or a result. Such a payee is only ever queried."""
	return (
		bool(row.request_sent_on or row.conversation_id or row.transaction_receipt or row.result_code)
		or row.status != "Queued"
	)


# How many B2C requests of one batch are in flight at once (site config ``mpesa_b2c_concurrency``).
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 32
ROW_FIELDS = (
	"name",
	"idx",
	"status",
	"phone",
	"amount",
	"remarks",
	"originator_conversation_id",
	"conversation_id",
	"transaction_receipt",
	"result_code",
	"request_sent_on",
	"approval_digest",
	"payout_kind",
	"party_shortcode",
	"account_reference",
)


def concurrency():
	value = cint(frappe.conf.get("mpesa_b2c_concurrency") or DEFAULT_CONCURRENCY)
	return max(1, min(value, MAX_CONCURRENCY))


def batch_rows(name):
	return frappe.get_all(
		PAYEE, filters={"parent": name, "parenttype": B2C}, fields=list(ROW_FIELDS), order_by="idx asc"
	)


def send_disbursement(name):
	"""The job after submit (kept under its old name): see send_batch."""
	return send_batch(name)


def send_batch(name, workers=None):
	"""Send every payee of a submitted batch that was never sent, once each; returns the batch's
	status, or None when nothing was to be sent (or another worker holds the batch).

	The ids were committed with the submission. For each slice of rows the moment of sending is
	committed first; then the requests go out from a thread pool through the settings' one Client,
	and the answers are recorded here, in this thread. The threads never touch the database:
	Frappe's connection (``frappe.local.db``) belongs to this thread, a thread of its own would need
	its own site context and connection, and its commits would interleave with this one's row locks.
	A worker that dies mid-slice leaves rows whose moment of sending is set and no answer: the next
	run moves them to Unknown, and Transaction Status (never a second request) finds their outcome.
	"""
	batch = frappe.db.get_value(
		B2C, name, ["name", "docstatus", "mpesa_settings", "command_id", "occasion", "approved_by"], as_dict=True
	)
	if not batch or batch.docstatus != 1:
		return None
	# A named lock, held by this connection, so two workers never send one batch at once; the
	# database frees it if this process dies.
	lock = f"frappe_mpesa_b2c_{name}"[:64]
	if not frappe.db.sql("select get_lock(%s, 0)", (lock,))[0][0]:
		return None
	try:
		return _send_batch(batch, workers or concurrency())
	finally:
		frappe.db.sql("select release_lock(%s)", (lock,))


def _send_batch(batch, workers):
	rows = batch_rows(batch.name)
	interrupted = [r for r in rows if r.status == "Queued" and ever_sent(r)]
	if interrupted:
		_record(
			batch.name,
			[
				(
					r.name,
					"Unknown",
					{"error": _("The sending worker stopped after this request went out: its outcome is found by Transaction Status")},
				)
				for r in interrupted
			],
		)
	todo = []
	voided = []
	for r in rows:
		if r.status != "Queued" or ever_sent(r) or not r.originator_conversation_id:
			continue
		facts = frappe._dict(r, mpesa_settings=batch.mpesa_settings, command_id=batch.command_id, approved_by=batch.approved_by)
		if hmac.compare_digest(r.approval_digest or "", approval_digest(facts)):
			todo.append(r)
		else:
			voided.append(
				(r.name, "Failed", {"failure_confirmed": 1, "error": _("Changed after approval: nothing was sent")})
			)
	if voided:
		_record(batch.name, voided)
	if not todo:
		return records.refresh_batch_status(batch.name)
	try:
		settings = get_settings(batch.mpesa_settings)
		arguments = initiator_arguments(settings)
		arguments["party_a"] = settings_store.initiator_shortcode(settings)
		client = settings_store.get_client(settings)
	except frappe.ValidationError as error:
		# Nothing was sent: the approver fixes the settings; a person retries the rows.
		_record(batch.name, [(r.name, "Failed", {"failure_confirmed": 1, "error": str(error)}) for r in todo])
		return records.refresh_batch_status(batch.name)
	slice_size = workers * 4
	with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mpesa-b2c") as pool:
		for start in range(0, len(todo), slice_size):
			chunk = _claim(batch.name, todo[start : start + slice_size])
			if not chunk:
				continue
			try:
				# Fetched (or renewed) here, where the token store may use the database: the
				# threads then find it in the core's cache.
				settings_store.call(settings, "access_token")
			except DarajaCallError:
				pass  # each request then fails on its own, before anything is sent
			requests = [payout_request(arguments, batch, r) for r in chunk]
			answers = list(pool.map(lambda request: _payout_request(client, *request), requests))
			moves = [_answer_move(r, answer) for r, answer in zip(chunk, answers, strict=True)]
			_record(batch.name, moves)
			_match_kept_results(moves)
	return records.refresh_batch_status(batch.name)


def _claim(batch_name, rows):
	"""Commit the moment of sending for the rows still never sent; returns those rows."""
	records.lock_row(B2C, "name", batch_name, ["name"])
	claimed = []
	for r in rows:
		fresh = records.lock_row(PAYEE, "name", r.name, list(ROW_FIELDS))
		if fresh and fresh.status == "Queued" and not ever_sent(fresh):
			claimed.append(r)
	if claimed:
		frappe.db.sql(
			f"update `tab{PAYEE}` set request_sent_on = %s where name in ({', '.join(['%s'] * len(claimed))})",
			(now_datetime(), *(r.name for r in claimed)),
		)
	frappe.db.commit()
	return claimed


def payout_request(arguments, batch, row):
	"""(Client method, its arguments) for one payee: B2C to a phone, B2B to a paybill (with the
	account there) or a till, or tax to KRA against the PRN."""
	kind = row.payout_kind or payees.B2C
	common = dict(arguments, amount=whole(row.amount), remarks=row.remarks or "Payment")
	if kind == payees.B2C:
		return "b2c_payment", dict(
			common,
			command_id=batch.command_id,
			phone=row.phone,
			occasion=batch.occasion or None,
			originator_conversation_id=row.originator_conversation_id,
		)
	if kind == payees.TAX:
		return "tax_remittance", dict(common, prn=row.account_reference)
	return "b2b_payment", dict(
		common,
		command_id=payees.B2B_COMMANDS[kind],
		party_b=row.party_shortcode,
		account_reference=row.account_reference or None,
		occasion=batch.occasion or None,
	)


def _payout_request(client, method, kwargs):
	"""One payout request, in a pool thread: no database, no Frappe context. Returns Daraja's answer
	or the exception (a failure the main thread records)."""
	try:
		return getattr(client, method)(**kwargs)
	except Exception as error:  # recorded by the main thread as Failed or Unknown
		return error


def _answer_move(row, answer):
	"""(row, new status, values) for one request's answer or exception."""
	if isinstance(answer, BaseException):
		if not isinstance(answer, daraja.DarajaError):
			# Not the core's error: whether the request went out cannot be told.
			return row.name, "Unknown", {"error": f"{type(answer).__name__}: {answer}"}
		error = DarajaCallError.from_error(answer)
		if outcome_unknown(error):
			return row.name, "Unknown", {"error": str(error)}
		# Refused before sending (bad input, no connection) or by Daraja's gateway with a 4xx: nothing
		# moved. A 5xx says nothing certain; Failed, but not confirmed until Daraja says so.
		status = getattr(answer, "http_status", None) or 0
		confirmed = not isinstance(answer, daraja.APIError) or 400 <= cint(status) < 500
		return row.name, "Failed", {"error": str(error), "failure_confirmed": 1 if confirmed else 0}
	values = {"conversation_id": answer.get("ConversationID") or None}
	if (row.payout_kind or payees.B2C) != payees.B2C:
		# B2B and tax requests carry no id of ours: Daraja names the request, and its result
		# carries that name. It replaces the row's own id, which Daraja never saw.
		values["originator_conversation_id"] = answer.get("OriginatorConversationID") or None
	elif answer.get("OriginatorConversationID") not in (None, row.originator_conversation_id):
		values["error"] = _("Daraja answered with another OriginatorConversationID: {0}").format(
			answer.get("OriginatorConversationID")
		)
	return row.name, "Sent", values


def _match_kept_results(moves):
	"""Results that came before Daraja's answer named a B2B or tax request were kept unmatched:
	apply them now (commits)."""
	ids = [values["originator_conversation_id"] for _name, _new, values in moves if values.get("originator_conversation_id")]
	if ids and sum(records.match_unmatched(ocid) for ocid in ids):
		frappe.db.commit()


def _record(batch_name, moves):
	"""Record answers (status only forward: a result may already have arrived); commits."""
	records.lock_row(B2C, "name", batch_name, ["name"])
	for row_name, new, values in moves:
		records.move_payee(row_name, new, values)
	records.refresh_batch(batch_name)
	frappe.db.commit()


# What a retry keeps of the failed row: the payee, the amount, what it pays, and who set them.
RETRIED_FIELDS = (
	"party_type",
	"party",
	"payee_name",
	"phone",
	"amount",
	"reference_doctype",
	"reference_name",
	"remarks",
	"payee_set_by",
	"payout_kind",
	"party_shortcode",
	"account_reference",
	"debit_account",
)


def retry_failed(name, rows=None):
	"""A person (an Accounts Manager who made none of the batch) retries Failed payees whose failure
	Daraja confirmed: each becomes a new row with a new OriginatorConversationID, sealed under the
	batch's approval, and is sent by the job. Returns the new rows' names."""
	from frappe_mpesa.settings_store import require_roles

	require_roles(("Accounts Manager",))
	batch = frappe.get_doc(B2C, name)
	if batch.docstatus != 1:
		frappe.throw(_("Only a submitted disbursement is retried"))
	if frappe.session.user in batch.makers():
		frappe.throw(_("You made this disbursement or set a payee: another Accounts Manager must retry it"), frappe.PermissionError)
	records.lock_row(B2C, "name", name, ["name"])
	wanted = set(rows or ())
	made = []
	for row in batch.payees:
		if wanted and row.name not in wanted:
			continue
		fresh = records.lock_row(PAYEE, "name", row.name, ["status", "failure_confirmed", "retried"])
		if fresh.status != "Failed" or fresh.retried:
			continue
		if not fresh.failure_confirmed:
			if wanted:
				frappe.throw(
					_("Payee row {0}: its failure is not confirmed by Daraja; query its status first").format(row.idx)
				)
			continue
		child = insert_row(
			name,
			len(batch.payees) + len(made) + 1,
			1,
			row,
			RETRIED_FIELDS,
			seal=lambda child: approval_digest(
				frappe._dict(
					child.as_dict(),
					mpesa_settings=batch.mpesa_settings,
					command_id=batch.command_id,
					approved_by=batch.approved_by,
				)
			),
			status="Queued",
			retry_of=row.name,
			originator_conversation_id=str(uuid.uuid4()),
		)
		frappe.db.set_value(PAYEE, row.name, "retried", 1, update_modified=False)
		made.append(child.name)
	if made:
		records.refresh_batch(name)
		frappe.db.commit()
		frappe.enqueue("frappe_mpesa.initiator.send_batch", name=name, queue="long", timeout=3600, enqueue_after_commit=True)
	return made


def whole(amount):
	"""Daraja takes whole shillings; the controllers refuse anything else before this point."""
	value = flt(amount)
	if value != cint(value) or value < 1:
		frappe.throw(_("Amount must be a whole number of shillings, at least 1"))
	return cint(value)


def resolve_disbursements(minutes=10, limit=50):
	"""Ask Daraja about payees left Sent or Unknown (or whose batch's job never ran)."""
	cutoff = add_to_date(now_datetime(), minutes=-minutes)
	# Submitted, with payees never sent (the job was lost): sending those is still safe.
	for name in frappe.get_all(
		PAYEE,
		filters={"docstatus": 1, "status": "Queued", "request_sent_on": ("is", "not set"), "modified": ("<", cutoff)},
		pluck="parent",
		distinct=True,
		limit=limit,
	):
		send_batch(name)
	resolve_payees(
		filters={"docstatus": 1, "status": ("in", ("Sent", "Unknown", "Queued")), "request_sent_on": ("<", cutoff)},
		cutoff=cutoff,
		limit=limit,
	)


def resolve_payees(filters, cutoff=None, limit=50):
	"""One Transaction Status query for each payee matching ``filters`` (not queried since
	``cutoff``); the answer settles it through records.settle_b2c_from_status."""
	or_filters = [["last_status_query", "is", "not set"]]
	if cutoff:
		or_filters.append(["last_status_query", "<", cutoff])
	unresolved = frappe.get_all(
		PAYEE,
		filters=filters,
		or_filters=or_filters,
		fields=["name", "parent", "originator_conversation_id", "conversation_id", "transaction_receipt", "payout_kind"],
		limit=limit,
	)
	settings_of = {}
	for row in unresolved:
		if row.parent not in settings_of:
			settings_of[row.parent] = frappe.db.get_value(B2C, row.parent, "mpesa_settings")
		frappe.db.set_value(PAYEE, row.name, "last_status_query", now_datetime(), update_modified=False)
		frappe.db.commit()
		if (row.payout_kind or payees.B2C) != payees.B2C and not (row.conversation_id or row.transaction_receipt):
			# Daraja's answer never came, so the request has no id Daraja knows: a query by ours
			# would find nothing. Its outcome is read on the M-Pesa statement, never by resending.
			frappe.db.set_value(
				PAYEE,
				row.name,
				"error",
				_("No answer from Daraja named this request: check its outcome on the M-Pesa statement"),
				update_modified=False,
			)
			frappe.db.commit()
			continue
		try:
			start_request(
				settings_of[row.parent],
				"Transaction Status",
				transaction_id=row.transaction_receipt or None,
				original_conversation_id=None if row.transaction_receipt else row.originator_conversation_id,
				remarks="Status of a disbursement",
				reference_doctype=PAYEE,
				reference_name=row.name,
			)
		except frappe.ValidationError:
			frappe.log_error(title=f"Transaction Status query for {row.name} failed")
			frappe.db.commit()
	return len(unresolved)

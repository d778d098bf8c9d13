"""M-Pesa statement import: the portal's statement, read whole, then registered in one transaction.

A user with Accounts Manager attaches the statement downloaded from the M-Pesa organisation
portal (CSV or XLSX) to an Mpesa Statement Import. The file's SHA-256 is unique, so the same file
is refused a second time; a copy under another name gets through but adds nothing, as every row
is deduplicated by receipt against the C2B register.

The import parses the whole file first (a malformed row stops it with the row and column named,
before anything is written), then registers each new paid-in row along the confirmation's own
path (``records.apply``, source "Statement import"), so whatever reacts to new register rows
reacts to these, and writes one result line per row, all in one transaction: on any error it is
rolled back and nothing of the file stays. A big file runs in a background job (queue long).

Speed: what the register holds already costs one query per chunk of receipts; each new row is one
``Document.insert`` (with its doc_events, which posting relies on: no bulk insert of register
rows); the result lines, which nothing reacts to, go in with one bulk insert per chunk.
"""

import re

import frappe
from frappe import _
from frappe.utils import cint, now_datetime

from frappe_mpesa import backfill, records, statement
from frappe_mpesa.settings_store import require_roles

IMPORT = "Mpesa Statement Import"
LINE = "Mpesa Statement Import Line"
IMPORT_ROLES = ("Accounts Manager", "System Manager")
DRAFT, QUEUED, RUNNING, COMPLETED, FAILED = "Draft", "Queued", "Running", "Completed", "Failed"
IMPORTED, ALREADY_THERE, SKIPPED = "Imported", "Already there", "Skipped"
# Files up to this size import within the request; bigger ones in a background job.
INLINE_BYTES = 256 * 1024
CHUNK = 500
JOB_TIMEOUT = 3600
# A Running import older than this lost its worker: it may be started again.
STALE_HOURS = 2
LINE_FIELDS = (
	"name",
	"parent",
	"parenttype",
	"parentfield",
	"idx",
	"row_no",
	"receipt",
	"completed_at",
	"amount",
	"result",
	"note",
	"owner",
	"modified_by",
	"creation",
	"modified",
	"docstatus",
)


def file_doc(file_url):
	"""The File behind an Attach value, readable by the session user; or a clear error."""
	name = file_url and frappe.db.get_value("File", {"file_url": file_url}, "name")
	if not name:
		frappe.throw(_("The statement file {0} is missing").format(file_url or ""))
	doc = frappe.get_doc("File", name)
	if not frappe.has_permission("File", "read", doc):
		frappe.throw(_("You may not read the file {0}").format(file_url), frappe.PermissionError)
	return doc


def file_content(file_url):
	content = file_doc(file_url).get_content()
	return content.encode() if isinstance(content, str) else content


def statement_shortcode(header, settings):
	"""The shortcode the rows are registered for: the file's Short Code line if it has one (and
	it must be one of the record's), else the record's business shortcode."""
	found = re.match(r"\s*(\d{5,7})\b", header or "")
	if not (header or "").strip():
		return settings.business_shortcode
	if not found or found.group(1) not in records.shortcodes(settings):
		raise statement.StatementError(
			f"the statement is for Short Code {header!r}, not for this record's "
			+ " or ".join(sorted(records.shortcodes(settings)))
		)
	return found.group(1)


def start(name):
	"""Start (or restart, after a failure) an import: inline for a small file, else queued.
	Answers the import's status."""
	require_roles(IMPORT_ROLES)
	row = records.lock_row(IMPORT, "name", name, ["name", "status", "statement_file", "started_on"])
	if not row:
		frappe.throw(_("Mpesa Statement Import {0} not found").format(name), frappe.DoesNotExistError)
	frappe.get_doc(IMPORT, name).check_permission("write")
	stale = row.status == RUNNING and (
		not row.started_on or (now_datetime() - row.started_on).total_seconds() > STALE_HOURS * 3600
	)
	if row.status not in (DRAFT, FAILED) and not stale:
		frappe.throw(_("This import is {0}").format(_(row.status)))
	size = cint(frappe.db.get_value("File", {"file_url": row.statement_file}, "file_size"))
	frappe.db.set_value(IMPORT, name, {"status": QUEUED, "error": None})
	if size and size <= INLINE_BYTES:
		frappe.db.commit()
		run(name)
	else:
		frappe.enqueue(
			"frappe_mpesa.statement_import.run",
			queue="long",
			timeout=JOB_TIMEOUT,
			job_id=f"frappe_mpesa-statement-import-{name}",
			deduplicate=True,
			enqueue_after_commit=True,
			name=name,
		)
		frappe.db.commit()
	return frappe.db.get_value(IMPORT, name, "status")


def run(name):
	"""The import itself (the background job). Never raises: a failure is shown on the record."""
	row = records.lock_row(IMPORT, "name", name, ["name", "status", "mpesa_settings", "statement_file", "sha256"])
	if not row or row.status != QUEUED:
		frappe.db.rollback()
		return
	frappe.db.set_value(
		IMPORT, name, {"status": RUNNING, "started_on": now_datetime(), "finished_on": None, "error": None}
	)
	frappe.db.commit()
	try:
		summary = _import(row)
	except (statement.StatementError, frappe.ValidationError) as error:
		_fail(name, str(error))
		return
	except Exception as error:
		_fail(name, _("The import failed and was rolled back ({0})").format(type(error).__name__))
		frappe.log_error(title=f"M-Pesa statement import {name} failed")
		frappe.db.commit()
		return
	frappe.db.set_value(
		IMPORT, name, {**summary, "status": COMPLETED, "finished_on": now_datetime()}, update_modified=False
	)
	frappe.db.commit()


def _fail(name, message):
	frappe.db.rollback()
	frappe.db.delete(LINE, {"parent": name, "parenttype": IMPORT})
	frappe.db.set_value(
		IMPORT, name, {"status": FAILED, "error": message, "finished_on": now_datetime()}, update_modified=False
	)
	frappe.db.commit()


def _import(row):
	"""Parse the file whole, then register its new rows and write its lines; the summary counts."""
	content = file_content(row.statement_file)
	parsed = statement.parse(content, row.statement_file)
	if row.sha256 and parsed.sha256 != row.sha256:
		raise statement.StatementError("the attached file changed after it was checked: attach it again")
	settings = frappe.db.get_value(
		records.SETTINGS, row.mpesa_settings, ["name", "business_shortcode", "till_number"], as_dict=True
	)
	if not settings:
		raise statement.StatementError(f"Mpesa Settings {row.mpesa_settings} not found")
	shortcode = statement_shortcode(parsed.shortcode, settings)
	frappe.db.delete(LINE, {"parent": row.name, "parenttype": IMPORT})
	counts = {IMPORTED: 0, ALREADY_THERE: 0, SKIPPED: 0}
	now, user = now_datetime(), frappe.session.user
	for start in range(0, len(parsed.rows), CHUNK):
		chunk = parsed.rows[start : start + CHUNK]
		lines = _register_chunk(settings.name, shortcode, chunk)
		values = []
		for offset, (statement_row, result, note) in enumerate(lines):
			counts[result] += 1
			values.append(
				(
					frappe.generate_hash(length=12),
					row.name,
					IMPORT,
					"lines",
					start + offset + 1,
					statement_row.row,
					statement_row.receipt,
					records.local_datetime(statement_row.completed_at),
					statement_row.paid_in,
					result,
					(note or "")[:140] or None,
					user,
					user,
					now,
					now,
					0,
				)
			)
		frappe.db.bulk_insert(LINE, LINE_FIELDS, values)
	return {
		"shortcode": shortcode,
		"period": (parsed.period or "")[:140] or None,
		"total_rows": len(parsed.rows),
		"imported": counts[IMPORTED],
		"already_there": counts[ALREADY_THERE],
		"skipped": counts[SKIPPED],
	}


def _register_chunk(settings_name, shortcode, rows):
	"""[(row, result, note)] for a chunk of statement rows, registering the new payments."""
	wanted = [row.receipt for row in rows if statement.classify(row)[0]]
	known = {}
	express = {}
	if wanted:
		known = dict(
			frappe.get_all(records.C2B, filters={"name": ("in", wanted)}, fields=["name", "trans_amount"], as_list=True)
		)
		express = dict(
			frappe.get_all(
				records.EXPRESS,
				filters={"receipt_number": ("in", wanted)},
				fields=["receipt_number", "name"],
				as_list=True,
			)
		)
	lines = []
	for row in rows:
		ok, why = statement.classify(row)
		if not ok:
			lines.append((row, SKIPPED, why))
		elif row.receipt in known:
			lines.append((row, ALREADY_THERE, _differs(known[row.receipt], row.paid_in)))
		elif row.receipt in express:
			lines.append((row, SKIPPED, f"paid by M-Pesa Express: {express[row.receipt]}"))
		else:
			parsed = backfill.from_statement_row(row, shortcode)
			outcome = records.apply(settings_name, "c2b_confirmation", parsed, source=records.STATEMENT)
			if outcome.status == records.APPLIED:
				known[row.receipt] = row.paid_in
				lines.append((row, IMPORTED, None))
			elif outcome.status == records.DUPLICATE:
				lines.append((row, ALREADY_THERE, None))
			else:
				lines.append((row, SKIPPED, outcome.note or outcome.status))
	return lines


def _differs(registered, paid_in):
	if records.same_amount(paid_in, registered):
		return None
	return f"the register has {registered}, the statement {paid_in}"

"""Pull Transactions: the C2B payments whose confirmation never came, asked for on a schedule.

A shortcode is registered once (``register``, behind a Desk button). Then each run (``run``)
asks Daraja's pull query for the window since the last completed run (less an overlap, at most
48 hours back), page by page (OffSetValue), and registers every payment the register lacks along
the confirmation's own path (``records.apply``, source "Pull"), so a payment is one register row
whichever way it arrived. Each run is recorded in an Mpesa Pull Run. The query is read-only, so
a failed run is simply asked again by the next one.
"""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import frappe
from frappe import _
from frappe.utils import get_system_timezone, now_datetime

from frappe_mpesa import backfill, records, settings_store
from frappe_mpesa.privacy import redact
from frappe_mpesa.settings_store import DarajaCallError, get_settings
from frappe_mpesa.statement import NAIROBI

RUN = "Mpesa Pull Run"
# A bound on one run, whatever Daraja answers: a page that never empties ends the run.
MAX_PAGES = 200
# Daraja answers "1000" with its transactions; this is where the run notes what else it said.
OK_CODES = ("1000", "0")


def register(settings_name, force=0):
	"""Register the record's shortcode with the pull API. One-time in production: guarded."""
	doc = get_settings(settings_name)
	if doc.environment == "Production" and doc.pull_registered_on and not frappe.utils.cint(force):
		frappe.throw(
			_(
				"The shortcode was registered for pull on {0}. Production allows it once: ask Safaricom "
				"to remove the registration first, then register again with force."
			).format(doc.pull_registered_on)
		)
	if not doc.pull_nominated_number:
		frappe.throw(_("Set the Pull Nominated Number on Mpesa Settings {0}").format(doc.name))
	try:
		answer = settings_store.call(
			doc,
			"pull_register",
			shortcode=doc.business_shortcode,
			nominated_number=doc.pull_nominated_number,
			callback_url=settings_store.callback_url(doc, "pull"),
		)
	except DarajaCallError as error:
		doc.db_set("pull_registration_result", str(error), update_modified=False)
		frappe.db.commit()
		raise
	values = {"pull_registration_result": json.dumps(redact(answer), default=str)}
	# 1000: registered now; 1001: it already was (a registration made elsewhere).
	if str(answer.get("ResponseStatus")) in ("1000", "1001"):
		values["pull_registered_on"] = now_datetime()
	doc.db_set(values)
	return answer


def _aware(value):
	"""A naive site-local datetime as an aware one."""
	return value.replace(tzinfo=ZoneInfo(get_system_timezone())) if value else None


def last_window_end(settings_name):
	"""Where the last completed run's window ended (aware), or None."""
	end = frappe.db.get_value(
		RUN, {"mpesa_settings": settings_name, "status": "Completed"}, "window_end", order_by="window_end desc"
	)
	return _aware(end)


def run(settings_name, now=None):
	"""One pull run for ``settings_name``: the Mpesa Pull Run's name. Commits page by page."""
	settings = get_settings(settings_name)
	now = now or datetime.now(NAIROBI)
	start, end = backfill.pull_window(now, last_window_end(settings_name))
	log = frappe.get_doc(
		{
			"doctype": RUN,
			"mpesa_settings": settings_name,
			"status": "Running",
			"shortcode": settings.business_shortcode,
			"started_on": now_datetime(),
			"window_start": records.local_datetime(start),
			"window_end": records.local_datetime(end),
		}
	)
	log.insert(ignore_permissions=True)
	frappe.db.commit()
	counts = {"pages": 0, "fetched": 0, "new_rows": 0, "duplicates": 0, "skipped": 0, "errors": 0}
	problems = []
	status = "Completed"
	try:
		offset = 0
		while counts["pages"] < MAX_PAGES:
			answer = settings_store.call(
				settings,
				"pull_query",
				shortcode=settings.business_shortcode,
				start_date=start.astimezone(NAIROBI),
				end_date=end.astimezone(NAIROBI),
				offset=offset,
			)
			code = str(answer.get("ResponseCode") or "")
			entries = backfill.pull_entries(answer)
			if code and code not in OK_CODES and not entries:
				problems.append(f"Daraja answered {code}: {answer.get('ResponseMessage')}")
				break
			if not entries:
				break
			counts["pages"] += 1
			counts["fetched"] += len(entries)
			_register_page(settings, entries, counts, problems)
			_save_counts(log.name, counts, problems)
			frappe.db.commit()
			offset += len(entries)
		else:
			problems.append(f"stopped after {MAX_PAGES} pages")
	except (DarajaCallError, backfill.EntryError) as error:
		frappe.db.rollback()
		counts["errors"] += 1
		problems.append(str(error))
		status = "Failed"
	except Exception as error:
		frappe.db.rollback()
		counts["errors"] += 1
		problems.append(f"{type(error).__name__}: {error}")
		status = "Failed"
		frappe.log_error(title=f"M-Pesa pull for {settings_name} failed")
	_save_counts(log.name, counts, problems, status=status, finished_on=now_datetime())
	frappe.db.commit()
	return log.name


def _register_page(settings, entries, counts, problems):
	"""Register one page's new payments; what is there already costs one query for the page."""
	typed = []
	for entry in entries:
		try:
			typed.append(backfill.from_pull_entry(entry, settings.business_shortcode))
		except backfill.EntryError as error:
			counts["errors"] += 1
			problems.append(str(error))
	known = existing_receipts([parsed["TransID"] for parsed in typed])
	express = express_receipts([parsed["TransID"] for parsed in typed])
	for parsed in typed:
		trans_id = parsed["TransID"]
		if trans_id in known:
			counts["duplicates"] += 1
			continue
		if trans_id in express:
			# Paid by an STK push: its Mpesa Express Request holds it.
			counts["skipped"] += 1
			continue
		outcome = records.apply(settings.name, "c2b_confirmation", parsed, source=records.PULL)
		if outcome.status == records.APPLIED:
			counts["new_rows"] += 1
			known.add(trans_id)
		elif outcome.status == records.DUPLICATE:
			counts["duplicates"] += 1
		else:
			counts["skipped"] += 1
			problems.append(f"{trans_id}: {outcome.note or outcome.status}")


def existing_receipts(receipts):
	"""The receipts among ``receipts`` the C2B register already holds."""
	if not receipts:
		return set()
	return set(frappe.get_all(records.C2B, filters={"name": ("in", list(receipts))}, pluck="name"))


def express_receipts(receipts):
	"""The receipts among ``receipts`` that M-Pesa Express payments (STK pushes) already hold."""
	if not receipts:
		return set()
	return set(
		frappe.get_all(
			records.EXPRESS, filters={"receipt_number": ("in", list(receipts))}, pluck="receipt_number"
		)
	)


def _save_counts(name, counts, problems, **values):
	values.update(counts)
	values["error_details"] = "\n".join(problems[:50]) or None
	frappe.db.set_value(RUN, name, values, update_modified=False)


def run_due(names=None):
	"""The scheduled entry: a pull run for each enabled record (of ``names``, if given) whose
	schedule says it is due. Answers the runs started."""
	current = now_datetime()
	started = []
	filters = {"enabled": 1, "pull_schedule": ("in", (backfill.HOURLY, backfill.EVERY))}
	if names is not None:
		filters["name"] = ("in", list(names) or [""])
	for row in frappe.get_all(
		records.SETTINGS,
		filters=filters,
		fields=["name", "pull_schedule", "pull_interval_minutes"],
	):
		last = frappe.db.get_value(
			RUN, {"mpesa_settings": row.name}, "started_on", order_by="started_on desc"
		)
		if not backfill.pull_due(row.pull_schedule, row.pull_interval_minutes, last, current):
			continue
		try:
			started.append(run(row.name))
		except Exception:
			frappe.db.rollback()
			frappe.log_error(title=f"M-Pesa pull for {row.name} failed")
			frappe.db.commit()
	return started

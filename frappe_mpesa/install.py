"""Install, migrate and uninstall, including living beside frappe/payments.

frappe/payments ships its own DocType named "Mpesa Settings" (module Payment Gateways). A site
has one DocType per name, so this app takes it over: its definition replaces payments' (the
table and every record stay, with their names and encrypted secrets), payments' records are
mapped to this app's fields, and the takeover is asserted again after every migrate and after
any app install, because payments' own sync would otherwise put its definition back. On
uninstall the DocType is handed back to payments with its records, so nothing of payments is
lost. docs/frappe.md describes the consequences for payments' own M-Pesa gateway.
"""

import frappe

from frappe_mpesa import payment_requests, remote, settings_store

MODULE = "M-Pesa"
SETTINGS = "Mpesa Settings"
PAYMENTS = "payments"
ROLES = ("Accounts User", "Accounts Manager")
CREATED_ROLES_KEY = "frappe_mpesa_created_roles"
OUR_DOCTYPES = (
	"Mpesa Settings",
	"Mpesa Public Key Certificate",
	"Mpesa Express Request",
	"Mpesa C2B Payment Register",
	"B2C Payment Disbursement",
	"Mpesa Initiator Request",
	"Mpesa Account Balance",
	"Mpesa Callback Log",
)
OUR_PASSWORD_FIELDS = ("initiator_password", "callback_secret", "access_token")
SINGLES = ("Mpesa Public Key Certificate",)
# payments' values that adopting a record overwrote, per record, to give back on uninstall.
PAYMENTS_VALUES_KEY = "frappe_mpesa_payments_values"
# What other DocTypes keep about documents of ours, as (table, column naming the DocType). Plain
# log-like rows, deleted on uninstall with the DocTypes they describe.
REFERENCING_LOGS = (
	("Version", "ref_doctype"),
	("Comment", "reference_doctype"),
	("Activity Log", "reference_doctype"),
	("Deleted Document", "deleted_doctype"),
	("Error Log", "reference_doctype"),
	("Integration Request", "reference_doctype"),
	("DocShare", "share_doctype"),
	("Tag Link", "document_type"),
	("Document Follow", "ref_doctype"),
	("Notification Log", "document_type"),
	("ToDo", "reference_type"),
	("__UserSettings", "doctype"),
	("Custom Field", "dt"),
	("Property Setter", "doc_type"),
	("Custom DocPerm", "parent"),
	("User Permission", "allow"),
)
# Documents that configure something for a DocType of ours (they may have child rows): deleted
# through delete_doc.
REFERENCING_DOCUMENTS = (
	("Report", "ref_doctype"),
	("Print Format", "doc_type"),
	("Client Script", "dt"),
	("Server Script", "reference_doctype"),
	("Notification", "document_type"),
	("Dashboard Chart", "document_type"),
	("Number Card", "document_type"),
	("Kanban Board", "reference_doctype"),
	("List View Settings", "name"),
	("Workflow", "document_type"),
	("Assignment Rule", "document_type"),
	("Document Naming Rule", "document_type"),
	("Auto Repeat", "reference_doctype"),
	("Webhook", "webhook_doctype"),
)
# The app's own diagnostics in the Error Log (frappe.log_error titles), and its code's tracebacks.
ERROR_LOG_MARKERS = ("%/frappe_mpesa/%", "M-Pesa:%", "STK query for %", "Transaction Status query for %")


def after_install():
	ensure_roles()
	take_over_settings()
	payment_requests.ensure_gateways()


def after_migrate():
	take_over_settings()
	payment_requests.ensure_gateways()


def after_app_install(app_name):
	if app_name == PAYMENTS:
		take_over_settings()
	if app_name in (PAYMENTS, payment_requests.ERPNEXT_APP):
		# Payment Gateway records for ERPNext's Payment Requests (docs/frappe.md, "ERPNext Payment Requests").
		payment_requests.ensure_gateways()


def ensure_roles():
	"""ERPNext's accounting roles, created on a site without ERPNext so permissions can name them."""
	created = []
	for role in ROLES:
		if not frappe.db.exists("Role", role):
			frappe.get_doc({"doctype": "Role", "role_name": role, "desk_access": 1}).insert(
				ignore_permissions=True
			)
			created.append(role)
	if created:
		frappe.db.set_default(CREATED_ROLES_KEY, ",".join(created))


def payments_installed():
	return PAYMENTS in frappe.get_installed_apps()


def take_over_settings():
	"""Make "Mpesa Settings" this app's DocType again, mapping any record payments left."""
	if frappe.db.get_value("DocType", SETTINGS, "module") != MODULE:
		frappe.reload_doc("m_pesa", "doctype", "mpesa_settings", force=True)
		frappe.clear_cache(doctype=SETTINGS)
	adopt_payments_records()


def _columns():
	return set(frappe.db.get_table_columns(SETTINGS))


def adopt_payments_records():
	"""Fill this app's fields on records created by frappe/payments (they lack a callback id)."""
	columns = _columns()
	for name in frappe.get_all(SETTINGS, filters={"callback_id": ("is", "not set")}, pluck="name"):
		row = frappe.db.sql(f"select * from `tab{SETTINGS}` where name = %s", name, as_dict=True)[0]
		sandbox = bool(row.get("sandbox")) if "sandbox" in columns else True
		till = (row.get("till_number") or "").strip() or None
		shortcode = (row.get("business_shortcode") or "").strip() or None
		values = {
			"environment": "Sandbox" if sandbox else "Production",
			"enabled": 1,
			"callback_id": settings_store.new_callback_id(),
			"callback_base_url": default_base_url(),
			"allowlist_mode": row.get("allowlist_mode") or remote.ENFORCE,
			"callback_allowlist": row.get("callback_allowlist") or remote.DEFAULT_ALLOWLIST,
			"client_ip_header": "X-Forwarded-For",
			"proxy_hops": 1,
			"c2b_response_type": "Completed",
		}
		# payments pushes with the till number as shortcode in the sandbox (PayBill), and with the
		# business shortcode plus the till as PartyB in production (Buy Goods).
		if sandbox:
			values.update(transaction_type="PayBill", business_shortcode=till or shortcode)
		else:
			values.update(transaction_type="BuyGoods", business_shortcode=shortcode or till, till_number=till)
		remember_payments_values(name, row, values)
		secret = settings_store.new_callback_secret()
		# The column holds asterisks, the secret itself lives encrypted in __Auth (as Frappe does).
		values["callback_secret"] = "*" * len(secret)
		frappe.db.set_value(SETTINGS, name, values, update_modified=False)
		frappe.utils.password.set_encrypted_password(SETTINGS, name, secret, "callback_secret")
		clear_security_credential(name, columns)


def clear_security_credential(name, columns=None):
	"""A Security Credential is never stored by this app (it is derived when needed): drop the one
	payments kept, from its column and, where it was a Password field, from __Auth."""
	if "security_credential" in (columns if columns is not None else _columns()):
		frappe.db.sql(f"update `tab{SETTINGS}` set security_credential = null where name = %s", name)
	frappe.db.delete("__Auth", {"doctype": SETTINGS, "name": name, "fieldname": "security_credential"})


def _payments_values():
	import json

	return json.loads(frappe.db.get_default(PAYMENTS_VALUES_KEY) or "{}")


def remember_payments_values(name, row, values):
	"""Keep payments' own value of each payments field adoption overwrites (with what it wrote)."""
	import json

	kept = _payments_values()
	kept[name] = {
		field: {"payments": row.get(field), "adopted": values[field]}
		for field in ("business_shortcode", "till_number")
		if field in values and (row.get(field) or None) != (values[field] or None)
	}
	frappe.db.set_default(PAYMENTS_VALUES_KEY, json.dumps(kept, sort_keys=True))


def restore_payments_values(names=None):
	"""Give payments' records back what payments had: the sandbox flag from Environment, and each
	field adoption overwrote, unless it was edited since; drop only this app's secrets."""
	import json

	columns = _columns()
	names = frappe.get_all(SETTINGS, pluck="name") if names is None else list(names)
	kept = _payments_values()
	for name in names:
		if "sandbox" in columns and "environment" in columns:
			frappe.db.sql(
				f"update `tab{SETTINGS}` set sandbox = (environment = 'Sandbox') where name = %s", name
			)
		for field, value in (kept.pop(name, None) or {}).items():
			if field in columns and frappe.db.get_value(SETTINGS, name, field) == value["adopted"]:
				frappe.db.sql(
					f"update `tab{SETTINGS}` set `{field}` = %s where name = %s", (value["payments"], name)
				)
		frappe.db.delete("__Auth", {"doctype": SETTINGS, "name": name, "fieldname": ("in", OUR_PASSWORD_FIELDS)})
	if kept:
		frappe.db.set_default(PAYMENTS_VALUES_KEY, json.dumps(kept, sort_keys=True))
	else:
		frappe.defaults.clear_default(PAYMENTS_VALUES_KEY, parent="__default")


def default_base_url():
	from frappe_mpesa.m_pesa.doctype.mpesa_settings.mpesa_settings import default_base_url as base

	return base()


def before_uninstall():
	forget_tokens()
	ours = list(OUR_DOCTYPES)
	if payments_installed() and frappe.db.get_value("DocType", SETTINGS, "module") == MODULE:
		hand_back_settings()
		# payments' records keep their consumer secrets and passkeys.
		ours.remove(SETTINGS)
	frappe.db.delete("__Auth", {"doctype": ("in", ours)})
	delete_files(attachments(ours))
	forget_singles()
	# Frappe v15 leaves an uninstalled app's Scheduled Job Types behind, and their logs.
	jobs = frappe.get_all("Scheduled Job Type", filters={"method": ("like", "frappe_mpesa.%")}, pluck="name")
	if jobs:
		frappe.db.delete("Scheduled Job Log", {"scheduled_job_type": ("in", jobs)})
	frappe.db.delete("Scheduled Job Type", {"method": ("like", "frappe_mpesa.%")})


def attachments(doctypes):
	"""The File records attached to documents of ``doctypes``, and those the Singles' Attach
	fields point at."""
	names = set(frappe.get_all("File", filters={"attached_to_doctype": ("in", doctypes)}, pluck="name"))
	urls = [
		row[0]
		for row in frappe.db.sql(
			"select value from `tabSingles` where doctype in %(singles)s and field like %(field)s",
			{"singles": SINGLES, "field": "%\\_certificate"},
		)
		if row[0]
	]
	if urls:
		names.update(frappe.get_all("File", filters={"file_url": ("in", urls)}, pluck="name"))
	return sorted(names)


def delete_files(names):
	"""Delete File records, and their files on disk unless another File shares the content."""
	for name in names:
		frappe.delete_doc("File", name, ignore_permissions=True, force=True, delete_permanently=True)


def forget_singles():
	# Frappe v15 deletes no Single's values (tabSingles) when it deletes its DocType.
	frappe.db.delete("Singles", {"doctype": ("in", SINGLES)})


def hand_back_settings():
	"""Give "Mpesa Settings" back to frappe/payments with its records; drop only what we added."""
	ours = {
		field["fieldname"] for field in _definition(frappe.get_app_path("frappe_mpesa"), "m_pesa")["fields"]
	}
	theirs = {
		field["fieldname"]
		for field in _definition(frappe.get_app_path(PAYMENTS), "payment_gateways")["fields"]
	}
	restore_payments_values()
	columns = _columns()
	frappe.reload_doc("payment_gateways", "doctype", "mpesa_settings", force=True)
	for column in sorted((ours - theirs) & columns):
		frappe.db.sql_ddl(f"alter table `tab{SETTINGS}` drop column `{column}`")
	frappe.clear_cache(doctype=SETTINGS)


def _definition(app_path, module_folder):
	import json
	import os

	path = os.path.join(app_path, module_folder, "doctype", "mpesa_settings", "mpesa_settings.json")
	with open(path) as f:
		return json.load(f)


def forget_tokens():
	for name in frappe.get_all(SETTINGS, pluck="name") if frappe.db.table_exists(SETTINGS) else []:
		settings_store.TokenStore(name).forget()
	frappe.cache.delete_keys("frappe_mpesa:")


def after_uninstall():
	created = [role for role in (frappe.db.get_default(CREATED_ROLES_KEY) or "").split(",") if role]
	for role in created:
		# Only roles this app created, and only while no remaining DocType grants them.
		if frappe.db.exists("Role", role) and not frappe.db.exists("DocPerm", {"role": role}):
			frappe.delete_doc("Role", role, ignore_permissions=True, force=True)
	frappe.db.sql(
		"delete from `tabDefaultValue` where defkey in %s", ((CREATED_ROLES_KEY, PAYMENTS_VALUES_KEY),)
	)
	# With payments, "Mpesa Settings" went back to it with its records and their history.
	forget_references([d for d in OUR_DOCTYPES if not frappe.db.exists("DocType", d)])
	forget_error_logs()
	# Frappe has already committed the uninstall and commits nothing after this hook.
	frappe.db.commit()


def forget_references(doctypes):
	"""Delete what the rest of the site keeps about ``doctypes`` (uninstalled): history, comments,
	deleted copies, shares, customisations, reports and the like."""
	if not doctypes:
		return
	for table, column in REFERENCING_LOGS:
		if frappe.db.table_exists(table, cached=False) and column in frappe.db.get_table_columns(table):
			frappe.db.sql(f"delete from `tab{table}` where `{column}` in %s", (tuple(doctypes),))
	for table, column in REFERENCING_DOCUMENTS:
		if not frappe.db.table_exists(table, cached=False) or column not in frappe.db.get_table_columns(table):
			continue
		for (name,) in frappe.db.sql(f"select name from `tab{table}` where `{column}` in %s", (tuple(doctypes),)):
			frappe.delete_doc(table, name, ignore_permissions=True, force=True, delete_permanently=True)
	# What Frappe's uninstall keeps in Deleted Document: the app's DocTypes, Module Def, Workspaces.
	frappe.db.sql(
		"""delete from `tabDeleted Document` where (deleted_doctype in ('DocType', 'DocField', 'DocPerm')
		and deleted_name in %(doctypes)s) or (deleted_doctype = 'Module Def' and deleted_name = %(module)s)
		or (deleted_doctype in ('Workspace', 'Report', 'Page', 'Number Card', 'Dashboard Chart')
		and data like %(module_json)s)""",
		{"doctypes": tuple(doctypes), "module": MODULE, "module_json": f'%"module": "{MODULE}"%'},
	)


def forget_error_logs():
	"""The app's own Error Logs (its titles, tracebacks through its code): after_uninstall only."""
	conditions = " or ".join(["method like %s"] * len(ERROR_LOG_MARKERS) + ["error like %s"])
	frappe.db.sql(
		f"delete from `tabError Log` where {conditions}", (*ERROR_LOG_MARKERS, ERROR_LOG_MARKERS[0])
	)

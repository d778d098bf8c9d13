"""Every DocType JSON of the app is well formed: known fieldtypes, unique fieldnames, links to
DocTypes that exist, permissions naming real roles, and the security rules for who may do what.
No Frappe import: the JSON is read as data."""

import json
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "frappe_mpesa"
DOCTYPE_FILES = sorted((APP / "m_pesa" / "doctype").glob("*/*.json"))
DOCTYPES = {path.stem: json.loads(path.read_text()) for path in DOCTYPE_FILES}
BY_NAME = {doc["name"]: doc for doc in DOCTYPES.values()}

# Frappe v15's fieldtypes (frappe/model/__init__.py data_fieldtypes + no_value_fields + table_fields).
FIELDTYPES = {
	"Autocomplete",
	"Attach",
	"Attach Image",
	"Barcode",
	"Button",
	"Check",
	"Code",
	"Color",
	"Column Break",
	"Currency",
	"Data",
	"Date",
	"Datetime",
	"Duration",
	"Dynamic Link",
	"Float",
	"Fold",
	"Geolocation",
	"Heading",
	"HTML",
	"HTML Editor",
	"Icon",
	"Image",
	"Int",
	"JSON",
	"Link",
	"Long Text",
	"Markdown Editor",
	"Password",
	"Percent",
	"Phone",
	"Read Only",
	"Rating",
	"Section Break",
	"Select",
	"Signature",
	"Small Text",
	"Tab Break",
	"Table",
	"Table MultiSelect",
	"Text",
	"Text Editor",
	"Time",
}
# Roles that exist on every site this app supports: Frappe's own, ERPNext's accounting roles
# (the app creates them on a site without ERPNext), and any role the app ships as a fixture.
FIXTURE_ROLES = (
	{
		doc["name"]
		for path in (APP / "fixtures").glob("*.json")
		for doc in json.loads(path.read_text())
		if doc.get("doctype") == "Role"
	}
	if (APP / "fixtures").is_dir()
	else set()
)
ROLES = {
	"System Manager",
	"Administrator",
	"All",
	"Guest",
	"Accounts User",
	"Accounts Manager",
} | FIXTURE_ROLES
# DocTypes outside this app that its Link fields may name.
FRAPPE_DOCTYPES = {"DocType", "User", "File", "Role", "Company", "Currency"}
PERM_FLAGS = {
	"read",
	"write",
	"create",
	"delete",
	"submit",
	"cancel",
	"amend",
	"report",
	"export",
	"import",
	"print",
	"email",
	"share",
	"select",
	"set_user_permissions",
}
SECRET_FIELDS = {"consumer_secret", "online_passkey", "initiator_password", "callback_secret", "access_token"}


def test_doctypes_found():
	assert set(BY_NAME) >= {
		"Mpesa Settings",
		"Mpesa Public Key Certificate",
		"Mpesa Express Request",
		"Mpesa C2B Payment Register",
		"B2C Payment Disbursement",
		"Mpesa Initiator Request",
		"Mpesa Callback Log",
		"Mpesa Account Balance",
	}


@pytest.mark.parametrize("scrub", DOCTYPES)
def test_doctype_file_layout(scrub):
	doc = DOCTYPES[scrub]
	assert doc["doctype"] == "DocType"
	assert doc["module"] == "M-Pesa"
	assert doc["name"].lower().replace(" ", "_").replace("-", "_") == scrub
	folder = APP / "m_pesa" / "doctype" / scrub
	assert (folder / "__init__.py").exists()
	assert (folder / f"{scrub}.py").exists(), "every DocType has its controller"


REPORTS = sorted((APP / "m_pesa" / "report").glob("*/*.json"))


@pytest.mark.parametrize("path", REPORTS, ids=lambda path: path.parent.name)
def test_report_file_layout(path):
	"""Frappe finds a report's code and script in the folder named by scrub(report name)."""
	doc = json.loads(path.read_text())
	scrub = doc["name"].lower().replace(" ", "_").replace("-", "_")
	assert doc["doctype"] == "Report" and doc["module"] == "M-Pesa"
	assert path.parent.name == path.stem == scrub
	assert (path.parent / "__init__.py").exists()
	if doc["report_type"] == "Script Report":
		assert (path.parent / f"{scrub}.py").exists() and (path.parent / f"{scrub}.js").exists()


def test_reports_found():
	assert {path.stem for path in REPORTS} >= {"m_pesa_collections", "m_pesa_reconciliation", "m_pesa_payouts"}


@pytest.mark.parametrize("scrub", DOCTYPES)
def test_fields_are_well_formed(scrub):
	doc = DOCTYPES[scrub]
	names = [field["fieldname"] for field in doc["fields"]]
	assert len(names) == len(set(names)), "fieldnames are unique"
	assert doc["field_order"] == names
	for field in doc["fields"]:
		assert field["fieldtype"] in FIELDTYPES, field
		assert field["fieldname"].isidentifier() and field["fieldname"] == field["fieldname"].lower()
		if field["fieldtype"] in ("Link", "Table", "Table MultiSelect"):
			assert field.get("options") in set(BY_NAME) | FRAPPE_DOCTYPES, field
		if field["fieldtype"] == "Table":
			assert BY_NAME[field["options"]].get("istable") == 1
		if field["fieldtype"] == "Dynamic Link":
			assert field.get("options") in names, field
		if field["fieldtype"] == "Select" and "options" in field:
			options = field["options"].split("\n")
			assert len(options) == len(set(options))
			if "default" in field:
				assert field["default"] in options, field


@pytest.mark.parametrize("scrub", DOCTYPES)
def test_permissions_name_real_roles(scrub):
	doc = DOCTYPES[scrub]
	if doc.get("istable"):
		assert doc["permissions"] == []
		return
	assert doc["permissions"], "a DocType without permissions is invisible to everyone"
	for permission in doc["permissions"]:
		assert permission["role"] in ROLES, permission
		assert set(permission) <= PERM_FLAGS | {"role", "permlevel", "if_owner"}, permission
		assert "Guest" != permission["role"] and "All" != permission["role"]
		if not doc.get("is_submittable"):
			assert not permission.get("submit") and not permission.get("cancel")


def roles_with(doc, flag, permlevel=0):
	return {p["role"] for p in doc["permissions"] if p.get(flag) and p.get("permlevel", 0) == permlevel}


def test_certificate_is_for_system_managers_only():
	doc = BY_NAME["Mpesa Public Key Certificate"]
	assert {p["role"] for p in doc["permissions"]} == {"System Manager"}


def test_accounts_staff_read_settings_but_no_secret():
	doc = BY_NAME["Mpesa Settings"]
	levels = {p.get("permlevel", 0) for p in doc["permissions"]}
	assert levels == {0, 1}
	for flag in PERM_FLAGS - {"read", "select"}:
		assert roles_with(doc, flag) <= {"System Manager"}, flag
		assert roles_with(doc, flag, permlevel=1) <= {"System Manager"}, flag
	assert roles_with(doc, "read") == {"System Manager", "Accounts Manager", "Accounts User"}
	assert roles_with(doc, "read", permlevel=1) == {"System Manager"}
	assert roles_with(doc, "write", permlevel=1) == {"System Manager"}
	fields = {field["fieldname"]: field for field in doc["fields"]}
	# Secrets, the credentials that go with them and the callback plumbing sit on permlevel 1.
	hidden = SECRET_FIELDS | {"consumer_key", "initiator_name", "callback_id", "callback_allowlist", "token_expires_at"}
	for name in hidden:
		assert fields[name].get("permlevel") == 1, name
	for name in ("payment_gateway_name", "enabled", "environment", "business_shortcode", "transaction_limit"):
		assert fields[name].get("permlevel", 0) == 0, name


def test_amounts_are_shown_in_kes():
	"""Every Currency field names a field holding its currency (Frappe formats it with that, not
	with the site's default currency), and that field holds KES unless Daraja says otherwise."""
	for name, doc in BY_NAME.items():
		fields = {field["fieldname"]: field for field in doc["fields"]}
		for field in doc["fields"]:
			if field["fieldtype"] != "Currency":
				continue
			currency = fields.get(field.get("options"))
			assert currency, (name, field["fieldname"])
			if name == "Mpesa Account Balance":
				continue  # each balance row carries the currency Daraja reported
			assert currency["default"] == "KES" and currency.get("read_only"), (name, currency)
	limit = next(f for f in BY_NAME["Mpesa Settings"]["fields"] if f["fieldname"] == "transaction_limit")
	assert limit["fieldtype"] in ("Currency", "Int")


def test_grids_fit_their_columns():
	"""Frappe's grid has 10 column units; fields beyond them are cut off."""
	for name, doc in BY_NAME.items():
		if not doc.get("istable"):
			continue
		shown = [field for field in doc["fields"] if field.get("in_list_view")]
		assert sum(field.get("columns") or 2 for field in shown) <= 10, name


def test_workspace():
	path = APP / "m_pesa" / "workspace" / "m_pesa" / "m_pesa.json"
	doc = json.loads(path.read_text())
	assert (doc["doctype"], doc["name"], doc["module"], doc["public"]) == ("Workspace", "M-Pesa", "M-Pesa", 1)
	assert {row["role"] for row in doc["roles"]} == {"System Manager", "Accounts Manager", "Accounts User"}
	shortcuts = {row["link_to"] for row in doc["shortcuts"]}
	# Every DocType but child tables, which are only seen inside their parents.
	assert shortcuts == {name for name, doc in BY_NAME.items() if not doc.get("istable")}
	for row in doc["shortcuts"]:
		# Frappe counts the rows of every other DocType shortcut, and a Single has no table.
		if BY_NAME[row["link_to"]].get("issingle"):
			assert row["doc_view"] == "New", row
	links = {(row.get("link_type") or "DocType", row["link_to"]) for row in doc["links"] if row["type"] == "Link"}
	pages = {json.loads(p.read_text())["name"] for p in (APP / "m_pesa" / "page").glob("*/*.json")}
	reports = {json.loads(p.read_text())["name"] for p in (APP / "m_pesa" / "report").glob("*/*.json")}
	known = {("DocType", n) for n in BY_NAME} | {("Page", n) for n in pages} | {("Report", n) for n in reports}
	assert links <= known, links - known
	assert {("Page", "mpesa-reconciliation"), ("Report", "M-Pesa Collections"), ("Report", "M-Pesa Reconciliation")} <= links
	for row in doc["links"]:
		if row.get("link_type") == "Report":
			assert row["is_query_report"] == 1, row
	# Every number card the workspace lists is the app's, and the page's content places each one.
	cards = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in (APP / "m_pesa" / "number_card").glob("*/*.json")}
	listed = {row["number_card_name"] for row in doc["number_cards"]}
	assert listed == set(cards) and len(listed) == 5, listed
	for name, card in cards.items():
		assert (card["doctype"], card["module"], card["is_standard"], card["is_public"]) == ("Number Card", "M-Pesa", 1, 1)
		assert card["document_type"] in BY_NAME, card
		for _doctype, field, _op, _value, _ in json.loads(card["filters_json"]):
			assert field in {f["fieldname"] for f in BY_NAME[card["document_type"]]["fields"]} | {"docstatus"}, (name, field)
	# Every shortcut and card the page's content places exists.
	content = json.loads(doc["content"])
	labels = {row["label"] for row in doc["shortcuts"]}
	cards = {row["label"] for row in doc["links"] if row["type"] == "Card Break"}
	for block in content:
		if block["type"] == "shortcut":
			assert block["data"]["shortcut_name"] in labels, block
		if block["type"] == "card":
			assert block["data"]["card_name"] in cards, block
	assert {b["data"]["shortcut_name"] for b in content if b["type"] == "shortcut"} == labels
	assert {b["data"]["number_card_name"] for b in content if b["type"] == "number_card"} == listed


def test_secrets_are_password_fields():
	settings = {field["fieldname"]: field for field in BY_NAME["Mpesa Settings"]["fields"]}
	for name in SECRET_FIELDS:
		assert settings[name]["fieldtype"] == "Password", name
	assert settings["access_token"].get("hidden") and settings["access_token"].get("read_only")
	assert settings["token_expires_at"].get("hidden") and settings["token_expires_at"].get("read_only")
	assert settings["callback_secret"].get("read_only")
	assert BY_NAME["Mpesa Settings"].get("issingle") in (None, 0)
	assert BY_NAME["Mpesa Public Key Certificate"]["issingle"] == 1


def test_no_secret_fields_outside_settings():
	for name, doc in BY_NAME.items():
		if name == "Mpesa Settings":
			continue
		for field in doc["fields"]:
			assert field["fieldname"] not in SECRET_FIELDS | {"security_credential"}, (name, field)


def test_registers_are_readable_by_accounts_staff_and_written_by_nobody():
	for name in ("Mpesa Express Request", "Mpesa C2B Payment Register", "Mpesa Initiator Request"):
		doc = BY_NAME[name]
		assert {"Accounts User", "Accounts Manager"} <= roles_with(doc, "read"), name
		assert not roles_with(doc, "write") and not roles_with(doc, "create"), name
		for field in doc["fields"]:
			if field["fieldtype"] not in ("Section Break", "Column Break"):
				assert field.get("read_only"), (name, field["fieldname"])


def test_b2c_maker_and_checker_roles():
	doc = BY_NAME["B2C Payment Disbursement"]
	assert doc["is_submittable"] == 1
	assert "Accounts User" in roles_with(doc, "create")
	assert roles_with(doc, "submit") == {"Accounts Manager"}
	assert roles_with(doc, "cancel") == {"Accounts Manager"}
	fields = {field["fieldname"]: field for field in doc["fields"]}
	assert fields["payees"]["options"] == "B2C Disbursement Payee"
	assert fields["amended_from"]["options"] == doc["name"]
	payee = BY_NAME["B2C Disbursement Payee"]
	assert payee["istable"] == 1
	rows = {field["fieldname"]: field for field in payee["fields"]}
	# Each payee: its own id and receipt, and at most one ledger entry, each unique in the database.
	for name in ("originator_conversation_id", "transaction_receipt", "ledger_entry"):
		assert rows[name].get("unique") == 1, name
	# Nothing is editable after submission: the app writes its states and Daraja's answers with
	# db_set, and a user who could edit them could send a payment twice.
	assert not [name for name, field in fields.items() if field.get("allow_on_submit")]
	assert not [name for name, field in rows.items() if field.get("allow_on_submit")]
	for name in ("status", "payee_set_by", "approved_by", "approval_digest", "total_amount", "completed_count"):
		assert fields[name].get("read_only") and fields[name].get("no_copy"), name
	for name in (
		"status",
		"originator_conversation_id",
		"transaction_receipt",
		"result_code",
		"request_sent_on",
		"payee_set_by",
		"approval_digest",
		"ledger_entry",
		"failure_confirmed",
	):
		assert rows[name].get("read_only") and rows[name].get("no_copy"), name


def test_unique_correlation_ids():
	def unique(doctype, fieldname):
		return next(f for f in BY_NAME[doctype]["fields"] if f["fieldname"] == fieldname).get("unique") == 1

	assert unique("Mpesa Express Request", "checkout_request_id")
	assert unique("Mpesa Express Request", "receipt_number")
	assert unique("Mpesa C2B Payment Register", "trans_id")
	assert BY_NAME["Mpesa C2B Payment Register"]["autoname"] == "field:trans_id"
	assert unique("Mpesa Initiator Request", "originator_conversation_id")
	assert unique("Mpesa Callback Log", "dedupe_key")


def test_raw_callback_payload_is_system_manager_only():
	doc = BY_NAME["Mpesa Callback Log"]
	raw = next(f for f in doc["fields"] if f["fieldname"] == "raw_payload")
	assert raw["permlevel"] == 1
	assert roles_with(doc, "read", permlevel=1) == {"System Manager"}


def test_app_files_bench_needs():
	for name in ("hooks.py", "modules.txt", "patches.txt"):
		assert (APP / name).exists()
	assert (APP / "modules.txt").read_text().split() == ["M-Pesa"]
	assert (APP / "m_pesa" / ".frappe").exists()

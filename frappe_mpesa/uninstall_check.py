"""What is left of the app on a site after ``bench --site S uninstall-app frappe_mpesa``.

Imports nothing of the app (it runs after the uninstall), only Frappe. ``bench execute`` refuses
a module of an app the site does not have, so run it with the bench's Python from ``sites/``:

    cd frappe-bench/sites && ../env/bin/python -m frappe_mpesa.uninstall_check S

Searches every text column of every table (``tabSingles``, ``__Auth``, ``tabFile``, ``tabDocType``,
``tabVersion``… all of them) for the app's names, and the site's public and private files for them
in their names or contents. Prints each finding and a closing count; returns the findings.
"""

import os

import frappe

PATTERNS = ("mpesa", "m-pesa", "m_pesa", "daraja")
TEXT_TYPES = ("char", "varchar", "text", "tinytext", "mediumtext", "longtext", "json")
# Where Frappe itself keeps the name of every app that was ever installed, and not the app's data.
IGNORED = {("tabInstalled Application", "app_name")}


def database_findings(patterns=PATTERNS):
	findings = []
	columns = frappe.db.sql(
		"""select table_name, column_name from information_schema.columns
		where table_schema = database() and data_type in %s order by table_name, column_name""",
		(TEXT_TYPES,),
	)
	by_table = {}
	for table, column in columns:
		if (table, column) not in IGNORED:
			by_table.setdefault(table, []).append(column)
	for table, names in by_table.items():
		condition = " or ".join(f"lower(`{c}`) like %(p{i})s" for c in names for i in range(len(patterns)))
		values = {f"p{i}": f"%{pattern}%" for i, pattern in enumerate(patterns)}
		count = frappe.db.sql(f"select count(*) from `{table}` where {condition}", values)[0][0]
		if count:
			sample = frappe.db.sql(f"select * from `{table}` where {condition} limit 3", values, as_dict=True)
			shown = [
				{key: str(value)[:120] for key, value in row.items() if value and _matches(value, patterns)}
				| {"name": row.get("name")}
				for row in sample
			]
			findings.append(f"table {table}: {count} row(s), e.g. {shown}")
	return findings


def file_findings(patterns=PATTERNS):
	findings = []
	site_path = frappe.get_site_path()
	for folder in ("public/files", "private/files"):
		root = os.path.join(site_path, folder)
		for path, _dirs, files in os.walk(root):
			for filename in files:
				full = os.path.join(path, filename)
				if _matches(filename, patterns):
					findings.append(f"file {full}: its name")
					continue
				with open(full, "rb") as f:
					content = f.read(4 * 1024 * 1024).lower()
				if any(pattern.encode() in content for pattern in patterns):
					findings.append(f"file {full}: its content")
	return findings


def count_files():
	site_path = frappe.get_site_path()
	return {
		folder: sum(len(files) for _p, _d, files in os.walk(os.path.join(site_path, folder)))
		for folder in ("public/files", "private/files")
	}


def _matches(value, patterns):
	text = str(value).lower()
	return any(pattern in text for pattern in patterns)


def run():
	findings = database_findings() + file_findings()
	for finding in findings:
		print(finding)
	print(f"uninstall check: {len(findings)} finding(s); files on the site: {count_files()}")
	return findings


if __name__ == "__main__":
	import sys

	frappe.init(site=sys.argv[1], sites_path=".")
	frappe.connect()
	try:
		sys.exit(1 if run() else 0)
	finally:
		frappe.destroy()

"""Statement import speed: a 10,000-row portal statement (CSV) through Mpesa Statement Import on
a real site. Prints figures; asserts nothing. Target: 10,000 rows in at most 60 s.

Run inside the bench (the site's own Python):
	cd frappe-bench/sites && ../env/bin/python ../apps/frappe_mpesa/bench/statement_import.py --site erp.test [--rows 10000]

Each new row is a Document.insert of a register row (so its doc_events run, as posting needs);
what the register holds costs one query per 500 receipts; result lines go in by bulk insert.
Everything it creates is removed at the end.
"""

import argparse
import os
import time


def main():
	parser = argparse.ArgumentParser()
	parser.add_argument("--site", required=True)
	parser.add_argument("--rows", type=int, default=10_000)
	parser.add_argument("--sites-path", default=os.getcwd())
	args = parser.parse_args()

	import frappe

	frappe.init(site=args.site, sites_path=args.sites_path)
	frappe.connect()
	frappe.set_user("Administrator")
	from frappe_mpesa import records, statement_import
	from frappe_mpesa.testing import (
		delete_settings,
		delete_statement_imports,
		make_settings,
		new_statement_import,
		portal_rows,
		receipt_prefix,
		statement_csv,
	)

	settings, shortcode = "_Test Bench Statement Import", "600779"
	make_settings(settings, "https://example.com", business_shortcode=shortcode)
	try:
		prefix = receipt_prefix()
		content = statement_csv(portal_rows(prefix, args.rows), shortcode=shortcode)
		doc = new_statement_import(settings, content, "bench-statement.csv")
		frappe.db.set_value(statement_import.IMPORT, doc.name, "status", statement_import.QUEUED)
		frappe.db.commit()
		started = time.perf_counter()
		statement_import.run(doc.name)
		first = time.perf_counter() - started
		result = frappe.db.get_value(
			statement_import.IMPORT, doc.name, ["status", "imported", "already_there", "error"], as_dict=True
		)
		print(f"rows: {args.rows}, file: {len(content) / 1024:.0f} KiB")
		print(f"first import: {first:.2f} s ({args.rows / first:.0f} rows/s): {result}")

		copy = new_statement_import(settings, content + b"\n", "bench-statement-copy.csv")
		frappe.db.set_value(statement_import.IMPORT, copy.name, "status", statement_import.QUEUED)
		frappe.db.commit()
		started = time.perf_counter()
		statement_import.run(copy.name)
		second = time.perf_counter() - started
		result = frappe.db.get_value(
			statement_import.IMPORT, copy.name, ["status", "imported", "already_there"], as_dict=True
		)
		print(f"same rows again (all already there): {second:.2f} s: {result}")
		print(f"register rows for the prefix: {frappe.db.count(records.C2B, {'name': ('like', prefix + '%')})}")
	finally:
		delete_statement_imports(settings)
		delete_settings(settings)
		frappe.destroy()


if __name__ == "__main__":
	main()

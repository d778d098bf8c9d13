# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Desk as accounts staff see it. Server side: Accounts Users and Managers read and link the
settings record's non-secret fields and never get a secret, the M-Pesa workspace is theirs, and
amounts are formatted in KES whatever the site's default currency. In a browser (headless
Chromium through Selenium, skipped with the reason when either is missing): every form and list
of the app as a System Manager, an Accounts Manager and an Accounts User, with screenshots kept
under $MPESA_SCREENSHOT_DIR (default: a new folder in /tmp, printed)."""

import json
import os
import shutil
import tempfile
import time
from urllib.parse import quote

import frappe
from frappe.utils.password import update_password

from frappe_mpesa import api
from frappe_mpesa.testing import (
	CHECKER,
	MAKER,
	TEST_PASSWORD,
	RestClient,
	ServedSandboxTestCase,
	wait_for,
)

SETTINGS = "_Test Desk"
SYSTEM_MANAGER = "mpesa-desk-admin@example.com"
PAYER = "254708374149"
SITE_CURRENCY = "AED"  # what the site's default currency was where KES amounts showed as AED
SECRET_FIELDS = ("consumer_secret", "online_passkey", "initiator_password", "callback_secret", "access_token")
LEVEL_ONE = ("consumer_key", "initiator_name", "callback_id", "callback_base_url", "callback_allowlist")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
	"--headless=new",
	"--no-sandbox",
	"--disable-gpu",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
	"--no-first-run",
	"--disable-quic",
	"--disable-dev-shm-usage",
	# The served site's certificate is the sandbox's test CA, which this throwaway profile lacks.
	"--ignore-certificate-errors",
	"--window-size=1440,1000",
)


def ensure_system_manager():
	if not frappe.db.exists("User", SYSTEM_MANAGER):
		frappe.get_doc(
			{
				"doctype": "User",
				"email": SYSTEM_MANAGER,
				"first_name": "desk-admin",
				"send_welcome_email": 0,
				"user_type": "System User",
			}
		).insert(ignore_permissions=True)
	frappe.get_doc("User", SYSTEM_MANAGER).add_roles("System Manager")
	update_password(SYSTEM_MANAGER, TEST_PASSWORD)
	frappe.db.commit()


class TestDesk(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 0.2}

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_system_manager()
		cls.saved_currency = frappe.db.get_default("currency")
		frappe.db.set_default("currency", SITE_CURRENCY)
		frappe.db.set_value("Currency", SITE_CURRENCY, "enabled", 1)
		frappe.db.commit()
		frappe.clear_cache()
		cls.records = cls.make_records()

	@classmethod
	def tearDownClass(cls):
		frappe.set_user("Administrator")
		frappe.db.set_default("currency", cls.saved_currency)
		frappe.db.commit()
		frappe.clear_cache()
		super().tearDownClass()

	def tearDown(self):
		frappe.set_user("Administrator")

	@classmethod
	def make_records(cls):
		"""One record of each kind, made by the app's own flows against the sandbox."""
		records = {}
		records["Mpesa Express Request"] = api.stk_push(SETTINGS, 1500, PAYER, account_reference="INV-7")["name"]
		api.register_c2b_urls(SETTINGS)
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		from frappe_mpesa import settings_store

		settings_store.call(
			settings, "c2b_simulate", shortcode=cls.shortcode, amount=2500, phone=PAYER, bill_ref_number="INV-8"
		)
		records["Mpesa Initiator Request"] = api.check_balance(SETTINGS)
		frappe.set_user(MAKER)
		draft = frappe.get_doc(
			{
				"doctype": "B2C Payment Disbursement",
				"mpesa_settings": SETTINGS,
				"payees": [{"phone": PAYER, "amount": 1200}],
				"command_id": "BusinessPayment",
				"remarks": "Refund for order 9",
			}
		).insert()
		frappe.db.commit()
		frappe.set_user("Administrator")
		records["B2C Payment Disbursement"] = draft.name
		final = ("Success", "Failed", "Cancelled", "Timeout")
		assert wait_for(
			lambda: frappe.db.get_value("Mpesa Express Request", records["Mpesa Express Request"], "status")
			in final,
			timeout=20,
		)
		assert wait_for(
			lambda: frappe.db.get_value("Mpesa Initiator Request", records["Mpesa Initiator Request"], "status")
			== "Completed",
			timeout=20,
		)
		records["Mpesa C2B Payment Register"] = wait_for(
			lambda: frappe.db.get_value("Mpesa C2B Payment Register", {"mpesa_settings": SETTINGS}), timeout=20
		)
		records["Mpesa Callback Log"] = frappe.db.get_value("Mpesa Callback Log", {"mpesa_settings": SETTINGS})
		assert all(records.values()), records
		records["Mpesa Settings"] = SETTINGS
		return records

	# Server side

	def test_accounts_staff_read_and_link_settings_without_secrets(self):
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		secrets = [settings.get_password(f) for f in SECRET_FIELDS[:4]]
		# A change to a permlevel 1 field leaves a Version whose values the timeline shows.
		settings.consumer_key = "desk-key-" + frappe.generate_hash(length=12)
		settings.save()
		frappe.db.commit()
		secrets.append(settings.consumer_key)
		name = quote(SETTINGS)
		for user in (MAKER, CHECKER):
			frappe.set_user(user)
			self.assertTrue(frappe.has_permission("Mpesa Settings", "read", SETTINGS))
			self.assertFalse(frappe.has_permission("Mpesa Settings", "write", SETTINGS))
			client = RestClient(self.site.url, user)
			for path in (
				"/api/resource/Mpesa%20Settings/" + name,
				"/api/method/frappe.client.get?doctype=Mpesa%20Settings&name=" + name,
				"/api/method/frappe.desk.form.load.getdoc?doctype=Mpesa%20Settings&name=" + name,
			):
				status, text = client.request("GET", path)
				self.assertEqual(status, 200, (user, path, text[:300]))
				body = json.loads(text)
				doc = body.get("data") or body.get("message") or body["docs"][0]
				self.assertEqual(doc["business_shortcode"], self.shortcode)
				self.assertEqual(float(doc["transaction_limit"]), 150000)
				self.assertEqual(doc["currency"], "KES")
				for fieldname in SECRET_FIELDS + LEVEL_ONE:
					# Frappe removes them, or keeps the key with no value (frappe.client.get)
					self.assertFalse(doc.get(fieldname), (user, path, fieldname))
				for secret in secrets:
					self.assertNotIn(secret, text, (user, path))
			# Picking the record in a Link field: the search and the link check.
			status, text = client.request(
				"GET", "/api/method/frappe.desk.search.search_link?doctype=Mpesa%20Settings&txt=Test%20Desk"
			)
			self.assertEqual(status, 200, text[:300])
			self.assertIn(SETTINGS, [row["value"] for row in json.loads(text)["message"]])
			status, text = client.request(
				"GET", "/api/method/frappe.client.validate_link?doctype=Mpesa%20Settings&docname=" + name
			)
			self.assertEqual(status, 200, text[:300])
			self.assertEqual(json.loads(text)["message"]["name"], SETTINGS)
			for path in (
				"/api/method/frappe.client.get_password?doctype=Mpesa%20Settings&name="
				+ name
				+ "&fieldname=consumer_secret",
				"/api/method/frappe.client.get_value?doctype=Mpesa%20Settings&filters="
				+ name
				+ "&fieldname=consumer_key",
			):
				status, text = client.request("GET", path)
				for secret in secrets:
					self.assertNotIn(secret, text, (user, path))
			frappe.set_user("Administrator")

	def test_workspace_is_there_for_the_three_roles(self):
		from frappe.desk.desktop import get_desktop_page, get_workspace_sidebar_items

		self.assertEqual(frappe.db.get_value("Workspace", "M-Pesa", "module"), "M-Pesa")
		backfill = {"Mpesa Statement Import", "Mpesa Pull Run"}  # accounts staff and System Manager
		expected = {
			SYSTEM_MANAGER: {"Mpesa Settings", "Mpesa Public Key Certificate", "Mpesa Callback Log"} | backfill,
			CHECKER: {"Mpesa Settings", "Mpesa Callback Log"} | backfill,
			MAKER: {"Mpesa Settings"} | backfill,
		}
		for user, extra in expected.items():
			frappe.set_user(user)
			frappe.clear_cache(user=user)
			pages = [page.name for page in get_workspace_sidebar_items()["pages"]]
			self.assertIn("M-Pesa", pages, user)
			page = get_desktop_page(json.dumps({"name": "M-Pesa", "title": "M-Pesa", "public": 1}))
			shortcuts = {item["link_to"] for item in page["shortcuts"]["items"]}
			registers = {"Mpesa Express Request", "Mpesa C2B Payment Register", "B2C Payment Disbursement"}
			self.assertEqual(shortcuts - registers - {"Mpesa Initiator Request"}, extra, user)
			frappe.set_user("Administrator")

	def test_amounts_resolve_to_kes_whatever_the_site_currency(self):
		from frappe.model.meta import get_field_currency

		self.assertEqual(frappe.db.get_default("currency"), SITE_CURRENCY)
		kes_symbol = frappe.db.get_value("Currency", "KES", "symbol") or "KES"
		site_symbol = frappe.db.get_value("Currency", SITE_CURRENCY, "symbol")
		checked = 0
		for doctype, name in self.records.items():
			doc = frappe.get_doc(doctype, name)
			rows = [doc] + [row for table in doc.meta.get_table_fields() for row in doc.get(table.fieldname)]
			for row in rows:
				for df in row.meta.get("fields", {"fieldtype": "Currency"}):
					frappe.local.field_currency = None
					self.assertEqual(get_field_currency(df, row), "KES", (doctype, df.fieldname))
					shown = frappe.format_value(row.get(df.fieldname) or 0, df, row)
					self.assertIn(kes_symbol, shown)
					self.assertNotIn(site_symbol, shown)
					checked += 1
		self.assertGreaterEqual(checked, 9)

	# In a browser

	def test_every_form_and_list_in_a_browser(self):
		make_driver = browser()
		out = os.environ.get("MPESA_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="mpesa-desk-")
		os.makedirs(out, exist_ok=True)
		print(f"\nDesk screenshots: {out}")
		problems = []
		for user, role in ((SYSTEM_MANAGER, "system-manager"), (CHECKER, "accounts-manager"), (MAKER, "accounts-user")):
			profile = tempfile.mkdtemp(prefix="mpesa-chromium-")
			try:
				driver = make_driver(profile)
				try:
					problems += Desk(driver, self.site.url, user, out, role).visit_all(self.pages(user))
				finally:
					driver.quit()
			finally:
				shutil.rmtree(profile, ignore_errors=True)
		self.assertEqual(problems, [])

	def pages(self, user):
		"""(label, route, checks) for every list and form this user may read."""
		pages = [("workspace", "m-pesa", {"text": ["Express Requests", "B2C Payment Disbursement"]})]
		for doctype, name in self.records.items():
			if not frappe.has_permission(doctype, "read", user=user):
				continue
			slug = frappe.scrub(doctype).replace("_", "-")
			amounts = doctype != "Mpesa Callback Log"
			# The lists that show an amount column.
			listed = doctype not in ("Mpesa Callback Log", "Mpesa Settings", "Mpesa Initiator Request")
			pages.append((f"{slug}-list", slug, {"kes": listed}))
			checks = {"kes": amounts}
			if doctype == "Mpesa Initiator Request":
				checks.update(no_save=True, grid=["Account", "Current", "Available", "Reserved", "Uncleared"])
			elif doctype in ("Mpesa Express Request", "Mpesa C2B Payment Register", "Mpesa Callback Log"):
				checks.update(no_save=True)
			elif doctype == "Mpesa Settings" and user != SYSTEM_MANAGER:
				checks.update(absent=["Consumer Key", "Consumer Secret", "Initiator Password", "Callback Secret"])
			pages.append((f"{slug}-form", f"{slug}/{quote(name)}", checks))
		if frappe.has_permission("B2C Payment Disbursement", "create", user=user):
			pages.append(("b2c-payment-disbursement-new", "b2c-payment-disbursement/new", {"pick": SETTINGS}))
		if frappe.has_permission("Mpesa Public Key Certificate", "read", user=user):
			pages.append(("certificate", "mpesa-public-key-certificate", {}))
		return pages


def browser():
	"""A function making a headless Chromium WebDriver in a given profile folder, or the test
	skipped with the reason."""
	import unittest

	missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
	if missing:
		raise unittest.SkipTest(f"no browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver)")
	try:
		from selenium import webdriver
		from selenium.webdriver.chrome.service import Service
	except ImportError:
		raise unittest.SkipTest("no browser: selenium is not installed in the bench env (pip install selenium)")

	def make(profile):
		options = webdriver.ChromeOptions()
		options.binary_location = CHROMIUM
		for flag in CHROMIUM_FLAGS:
			options.add_argument(flag)
		options.add_argument(f"--user-data-dir={profile}")
		# The driver named explicitly: Selenium Manager would otherwise try to download one.
		return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)

	return make


class Desk:
	"""One user's browser on the served site."""

	def __init__(self, driver, base_url, user, out, role):
		self.driver, self.base_url, self.user, self.out, self.role = driver, base_url, user, out, role
		driver.set_page_load_timeout(60)
		driver.get(base_url + "/login")
		sid = RestClient(base_url, user).cookie.split("=", 1)[1]
		driver.add_cookie({"name": "sid", "value": sid, "path": "/"})

	def visit_all(self, pages):
		problems = []
		for label, route, checks in pages:
			try:
				problems += [f"{self.role} {label}: {p}" for p in self.visit(label, route, checks)]
			except Exception as error:  # a page that never settles is a finding, not a crash
				self.screenshot(label)
				problems.append(f"{self.role} {label}: {type(error).__name__}: {error}")
		return problems

	def visit(self, label, route, checks):
		self.driver.get(f"{self.base_url}/app/{route}")
		self.settle()
		found = []
		if "pick" in checks:
			self.pick_link("mpesa_settings", checks["pick"])
			self.settle()
			picked = self.js("return cur_frm && cur_frm.doc.mpesa_settings")
			if picked != checks["pick"]:
				found.append(f"picked {checks['pick']!r}, the form holds {picked!r}")
		path = self.screenshot(label)
		text = self.js(
			"return [...document.querySelectorAll('.page-container')].filter(e => e.offsetParent)"
			".map(e => e.innerText).join('\\n')"
		)
		dialogs = self.js(
			"return [...document.querySelectorAll('.modal')].filter(m => m.offsetParent || m.classList.contains('show'))"
			".map(m => m.innerText.trim()).filter(t => t)"
		)
		if dialogs:
			found.append(f"dialog shown: {dialogs}")
		for bad in ("Not permitted", "Insufficient Permission", "not found", "Not Found"):
			if bad in text:
				found.append(f"page says {bad!r}")
		if checks.get("kes"):
			if "KES" not in text and "Sh " not in text:
				found.append("no KES amount shown")
			for other in ("AED", "د.إ", "$"):
				if other in text:
					found.append(f"an amount shown in {other}")
		for wanted in checks.get("text", []):
			if wanted not in text:
				found.append(f"{wanted!r} not shown")
		for hidden in checks.get("absent", []):
			if hidden in text:
				found.append(f"{hidden!r} shown")
		if checks.get("no_save"):
			primary = self.js(
				"return [...document.querySelectorAll('.page-actions .primary-action')]"
				".filter(b => b.offsetParent).map(b => b.innerText.trim())"
			)
			if any("Save" in label for label in primary):
				found.append("a Save button on a record nobody edits")
		if checks.get("grid"):
			found += self.grid_columns(checks["grid"])
		if found:
			found.append(f"see {path}")
		return found

	def js(self, script, *args):
		return self.driver.execute_script(script, *args)

	def settle(self, timeout=30):
		"""Until Desk is booted, no request is pending and the page has stopped changing."""
		deadline = time.monotonic() + timeout
		quiet = 0
		while time.monotonic() < deadline:
			ready = self.js(
				"return !!(window.frappe && frappe.boot && frappe.request && document.readyState === 'complete'"
				" && !frappe.request.ajax_count && !document.querySelector('.freeze-message-container:not(.hide)')"
				" && document.querySelector('.page-container'))"
			)
			quiet = quiet + 1 if ready else 0
			if quiet >= 4:
				return
			time.sleep(0.25)
		raise TimeoutError("the page did not settle")

	def pick_link(self, fieldname, value):
		"""Type into a Link field as a person would and pick the suggestion."""
		from selenium.webdriver.common.by import By

		field = self.driver.find_element(By.CSS_SELECTOR, f'input[data-fieldname="{fieldname}"]')
		field.click()
		field.send_keys(value[:6])
		deadline = time.monotonic() + 15
		while time.monotonic() < deadline:
			for item in self.driver.find_elements(By.XPATH, f"//*[@role='option'][contains(normalize-space(.), '{value}')]"):
				if item.is_displayed():
					item.click()
					return
			time.sleep(0.25)
		offered = self.js(
			"const box = document.activeElement && document.activeElement.closest('.awesomplete');"
			" return box ? box.outerHTML.slice(0, 1500) : 'no dropdown'"
		)
		raise AssertionError(f"{value!r} was not offered in {fieldname}: {offered}")

	def grid_columns(self, labels):
		"""Each wanted column is shown, and no heading or cell of the grid is cut off."""
		found = []
		shown = self.js(
			"return [...document.querySelectorAll('.form-grid .grid-heading-row .static-area')]"
			".filter(e => e.offsetParent).map(e => e.innerText.trim())"
		)
		found += [f"grid column {label!r} missing (shown: {shown})" for label in labels if label not in shown]
		cut = self.js(
			"return [...document.querySelectorAll('.form-grid .static-area')]"
			".filter(e => e.offsetParent && e.scrollWidth > e.clientWidth + 1).map(e => e.innerText.trim())"
		)
		if cut:
			found.append(f"grid text cut off: {cut}")
		return found

	def screenshot(self, label):
		"""The whole page: the window is made as tall as the page first."""
		path = os.path.join(self.out, f"{self.role}--{label}.png")
		height = self.js("return document.documentElement.scrollHeight") or 1000
		self.driver.set_window_size(1440, min(max(height, 1000), 4000))
		self.driver.save_screenshot(path)
		self.driver.set_window_size(1440, 1000)
		return path

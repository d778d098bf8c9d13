# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Checkout in a real browser (headless Chromium through Selenium) against the real Desk of the
served site, with Frappe's own Socket.IO server started for it (``testing.RealtimeServer``; the
live status is realtime, not polled):

- a Sales Invoice: Request M-Pesa payment, the dialog shows Pending then Paid, the form turns
  Paid; a second user with the same invoice open in another browser receives nothing;
- the point of sale: a cart, the M-Pesa payment method, Request, the row filled with the amount
  and the receipt, the order completed (a POS Profile with Cash and M-Pesa);
- a payment link in a phone-sized window (390x844), paid.

Prints (does not assert) the time from pressing Request to Pending showing, the sandbox's own
handling time taken out. Screenshots go to $MPESA_SCREENSHOT_DIR (default: a new folder in /tmp,
printed). Skips, saying why, without ERPNext, Chromium, chromedriver, Selenium or node."""

import os
import shutil
import tempfile
import time
import types
import unittest

import frappe
from frappe.utils import flt, nowdate
from frappe.utils.password import update_password

from frappe_mpesa.m_pesa.doctype.mpesa_express_request.test_checkout import COMPANY, PAYER, erpnext_missing
from frappe_mpesa.m_pesa.doctype.mpesa_express_request.test_pos import PosShop
from frappe_mpesa.m_pesa.test_desk import Desk, browser
from frappe_mpesa.sandbox.server import STK_PUSH_PATH
from frappe_mpesa.testing import (
	CHECKER,
	MAKER,
	TEST_PASSWORD,
	RealtimeServer,
	ServedSandboxTestCase,
	wait_for,
)

SETTINGS = "_Test Checkout Browser"
# A cashier as ERPNext's point of sale wants one: POS Invoices (Accounts User) and the page's own
# reads (Sales User), its opening entry (Sales Manager).
CASHIER = "mpesa-cashier@example.com"
EXPRESS = "Mpesa Express Request"
PHONE = (390, 844)

# Every mpesa_checkout message a page receives, with the time it came, and Request's presses.
RECORDER = """
window.mpesa_events = window.mpesa_events || [];
if (!window.mpesa_recording) {
	window.mpesa_recording = true;
	frappe.realtime.on("mpesa_checkout", (m) => window.mpesa_events.push({at: performance.now(), message: m}));
	document.addEventListener("click", (e) => {
		const button = e.target.closest(".mpesa-checkout-dialog .btn-primary, .mpesa-pos-request");
		if (button) window.mpesa_pressed = {at: performance.now(), wall: Date.now()};
	}, true);
	new MutationObserver(() => {
		if (window.mpesa_pressed && !window.mpesa_pending_at
			&& document.querySelector('.mpesa-status[data-status="Pending"]')) {
			window.mpesa_pending_at = performance.now();
		}
	}).observe(document.body, {subtree: true, childList: true, attributes: true});
}
"""


def make_cashier():
	if not frappe.db.exists("User", CASHIER):
		frappe.get_doc(
			{"doctype": "User", "email": CASHIER, "first_name": "mpesa-cashier", "send_welcome_email": 0}
		).insert(ignore_permissions=True)
	frappe.get_doc("User", CASHIER).add_roles("Accounts User", "Sales User", "Sales Manager")
	update_password(CASHIER, TEST_PASSWORD)
	frappe.db.commit()


def remove_cashier():
	frappe.db.rollback()
	for table, column in (("Activity Log", "user"), ("Sessions", "user"), ("Version", "docname")):
		frappe.db.delete(table, {column: CASHIER})
	if frappe.db.exists("User", CASHIER):
		frappe.delete_doc("User", CASHIER, ignore_permissions=True, force=True, delete_permanently=True)
	frappe.db.delete("Deleted Document", {"deleted_name": CASHIER})
	frappe.db.commit()


class TestCheckoutBrowser(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 1.5}
	REQUIRES = staticmethod(erpnext_missing)

	@classmethod
	def setUpClass(cls):
		frappe.set_user("Administrator")
		cls.make_driver = staticmethod(browser())
		super().setUpClass()
		cls.realtime = RealtimeServer(cls.site)
		reason = cls.realtime.missing()
		if reason:
			cls.tearDownClass()
			raise unittest.SkipTest(f"no realtime server: {reason}")
		cls.realtime.start()
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		settings.company = COMPANY
		settings.transaction_limit = 150000
		settings.save(ignore_permissions=True)
		frappe.db.commit()
		make_cashier()
		cls.shop = PosShop(SETTINGS, users=(CASHIER,))
		cls.out = os.environ.get("MPESA_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="mpesa-checkout-")
		os.makedirs(cls.out, exist_ok=True)
		print(f"\nCheckout screenshots: {cls.out}")
		cls.profiles = []

	@classmethod
	def tearDownClass(cls):
		frappe.set_user("Administrator")
		if getattr(cls, "realtime", None):
			cls.realtime.stop()
		if getattr(cls, "shop", None):
			for name in frappe.get_all(
				"Payment Entry Reference", filters={"reference_name": ("in", cls.invoices() or [""])}, pluck="parent"
			):
				entry = frappe.get_doc("Payment Entry", name)
				if entry.docstatus == 1:
					entry.flags.ignore_links = True
					entry.cancel()
				frappe.delete_doc("Payment Entry", name, force=True, ignore_permissions=True)
			for name in cls.invoices():
				doc = frappe.get_doc("Sales Invoice", name)
				if doc.docstatus == 1:
					doc.flags.ignore_links = True
					doc.cancel()
				frappe.delete_doc("Sales Invoice", name, force=True, ignore_permissions=True)
			cls.shop.remove()
		for profile in getattr(cls, "profiles", []):
			shutil.rmtree(profile, ignore_errors=True)
		super().tearDownClass()
		remove_cashier()

	@classmethod
	def invoices(cls):
		return frappe.get_all("Sales Invoice", filters={"customer": cls.shop.customer}, pluck="name")

	# ---- helpers ----------------------------------------------------------------------------

	def session(self, user=None, size=None):
		profile = tempfile.mkdtemp(prefix="mpesa-chromium-")
		self.profiles.append(profile)
		driver = self.make_driver(profile)
		self.addCleanup(driver.quit)
		if size:
			driver.set_window_size(*size)
		if user is None:
			return driver
		return Desk(driver, self.site.url, user, self.out, user.split("@")[0])

	def shot(self, desk, label):
		path = os.path.join(self.out, f"{label}.png")
		desk.driver.save_screenshot(path)
		return path

	def until(self, desk, script, timeout=30, what=""):
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			value = desk.driver.execute_script(script)
			if value:
				frappe.db.rollback()  # what the page saw is committed: read it afresh here too
				return value
			time.sleep(0.2)
		self.shot(desk, f"timeout-{what or 'wait'}")
		raise AssertionError(f"timed out waiting for {what or script}")

	def record(self, desk):
		desk.driver.execute_script(RECORDER)
		# Connected, so that silence means nothing was sent, not that nothing could arrive.
		try:
			self.until(desk, "return frappe.realtime.socket && frappe.realtime.socket.connected", 30, "socket")
		except AssertionError:
			state = desk.driver.execute_script(
				"const s = frappe.realtime.socket; return {socket: !!s, disable_async: frappe.boot.disable_async,"
				" port: frappe.boot.socketio_port, dev: window.dev_server, site: frappe.boot.sitename,"
				" io: s && s.io && s.io.uri, engine: s && s.io && s.io.engine && s.io.engine.transport && s.io.engine.transport.name}"
			)
			logs = desk.driver.get_log("browser") if hasattr(desk.driver, "get_log") else []
			raise AssertionError(f"no realtime connection: {state}; console: {logs[-10:]}")

	def sale(self, amount):
		si = frappe.get_doc(
			{
				"doctype": "Sales Invoice",
				"company": COMPANY,
				"customer": self.shop.customer,
				"currency": "KES",
				"posting_date": nowdate(),
				"due_date": nowdate(),
				"items": [{"item_code": self.shop.item, "qty": 1, "rate": amount}],
			}
		).insert(ignore_permissions=True)
		si.submit()
		frappe.db.commit()
		return si

	def speed(self, desk, label):
		"""Print the press-to-Pending time with the sandbox's handling of the token and push calls
		in between taken out."""
		pressed, pending, wall = desk.driver.execute_script(
			"return [window.mpesa_pressed.at, window.mpesa_pending_at, window.mpesa_pressed.wall]"
		)
		total = pending - pressed
		start, end = wall / 1000, wall / 1000 + total / 1000
		sandbox = sum(
			seconds * 1000 for _path, arrived, seconds in self.sandbox.handling_times if start <= arrived <= end
		)
		print(
			f"\n{label}: press Request -> Pending shown {total:.0f} ms; sandbox (Daraja) {sandbox:.0f} ms; "
			f"without it {total - sandbox:.0f} ms (target <= 300 ms)"
		)

	# ---- (a) + (d): a Sales Invoice, two users --------------------------------------------

	def test_sales_invoice_turns_paid_and_only_the_asking_user_hears(self):
		si = self.sale(45)
		asking, other = self.session(MAKER), self.session(CHECKER)
		for desk in (asking, other):
			desk.driver.get(f"{self.site.url}/app/sales-invoice/{si.name}")
			desk.settle()
			self.record(desk)
		asking.driver.execute_script(
			"cur_frm.page.inner_toolbar.find('button:contains(\"M-Pesa\")').click()"
		)
		self.until(asking, "return [...document.querySelectorAll('.dropdown-menu a')].find(a => a.innerText.includes('Request M-Pesa payment'))", 10, "menu")
		asking.driver.execute_script(
			"[...document.querySelectorAll('.dropdown-menu a')].find(a => a.innerText.includes('Request M-Pesa payment')).click()"
		)
		self.until(
			asking,
			"return window.cur_dialog && cur_dialog.$wrapper.hasClass('mpesa-checkout-dialog') && cur_dialog.display",
			15,
			"dialog",
		)
		phone = asking.driver.execute_script("return cur_dialog.get_value('phone')")
		amount = asking.driver.execute_script("return cur_dialog.get_value('amount')")
		self.assertEqual(amount, 45)
		if not phone:
			asking.driver.execute_script(f"cur_dialog.set_value('phone', '{PAYER}')")
		self.shot(asking, "sales-invoice-1-dialog")
		asking.driver.execute_script("document.querySelector('.mpesa-checkout-dialog.show .btn-primary').click()")
		self.until(asking, "return window.mpesa_pending_at", 15, "pending")
		self.shot(asking, "sales-invoice-2-pending")
		self.speed(asking, "Sales Invoice dialog")
		self.until(asking, "return document.querySelector('.mpesa-checkout-dialog .mpesa-status[data-status=\"Success\"]')", 30, "paid")
		self.until(asking, "return cur_frm.doc.status === 'Paid'", 20, "invoice-paid")
		text = asking.driver.execute_script("return document.querySelector('.mpesa-checkout-dialog .mpesa-status').innerText")
		self.assertIn("Paid", text)
		[push] = frappe.get_all(EXPRESS, filters={"reference_name": si.name}, fields=["name", "receipt_number", "owner"])
		self.assertIn(push.receipt_number, text)
		self.assertEqual(push.owner, MAKER)
		self.shot(asking, "sales-invoice-3-paid")
		asking.driver.execute_script("cur_dialog && cur_dialog.hide()")
		time.sleep(0.5)
		self.shot(asking, "sales-invoice-4-form-paid")
		self.assertEqual(frappe.db.get_value("Sales Invoice", si.name, "status"), "Paid")
		# The realtime reached the asking user's page, Pending and Paid, and not the other's.
		heard = asking.driver.execute_script("return window.mpesa_events.map(e => e.message.status)")
		self.assertIn("Pending", heard)
		self.assertIn("Success", heard)
		self.assertEqual(other.driver.execute_script("return window.mpesa_events"), [])
		# The other page would have heard a message meant for its user: its silence is real.
		frappe.publish_realtime("mpesa_checkout", {"request": "probe", "status": "Probe"}, user=CHECKER)
		self.until(other, "return window.mpesa_events.length", 10, "probe")
		self.assertEqual(other.driver.execute_script("return window.mpesa_events.map(e => e.message.status)"), ["Probe"])
		self.assertNotIn("Probe", asking.driver.execute_script("return window.mpesa_events.map(e => e.message.status)"))
		self.shot(other, "sales-invoice-5-other-user")

	# ---- (b): the point of sale -----------------------------------------------------------

	def test_point_of_sale_cart_paid_by_mpesa_and_submitted(self):
		cashier = self.session(CASHIER)
		driver = cashier.driver
		driver.get(f"{self.site.url}/app/point-of-sale")
		cashier.settle(60)
		self.until(cashier, "return document.querySelector('.point-of-sale-app .item-wrapper')", 60, "pos-items")
		self.record(cashier)
		search = driver.find_element("css selector", ".point-of-sale-app .search-field input")
		search.send_keys(self.shop.item)
		card_of_item = (
			"return [...document.querySelectorAll('.item-wrapper')]"
			f".find(e => unescape(e.dataset.itemCode) === '{self.shop.item}')"
		)
		self.until(cashier, card_of_item, 20, "item")
		time.sleep(1)
		driver.execute_script(card_of_item + ".click()")
		self.until(cashier, "return cur_frm && cur_frm.doc.items && cur_frm.doc.items.length && cur_frm.doc.grand_total > 0", 20, "cart")
		driver.execute_script(card_of_item + ".click()")
		self.until(cashier, "return cur_frm.doc.items[0].qty == 2", 20, "qty-2")
		self.shot(cashier, "pos-1-cart")
		total = driver.execute_script("return cur_frm.doc.rounded_total || cur_frm.doc.grand_total")
		self.assertEqual(flt(total), 200)
		driver.execute_script("document.querySelector('.checkout-btn').click()")
		mode = self.shop.mode
		card = f".mode-of-payment[data-mode=\"{mode.lower().replace(' ', '_')}\"]"
		self.until(cashier, f"return document.querySelector('{card} .mpesa-pos')", 30, "mpesa-card")
		self.until(cashier, "return cur_frm.doc.name && !cur_frm.is_new()", 20, "saved")
		# Cash is the default (ERPNext selects it), then the cashier picks M-Pesa.
		self.until(cashier, "return document.querySelector('.mode-of-payment[data-mode=\"cash\"].border-primary')", 10, "cash")
		driver.execute_script(f"document.querySelector('{card}').click()")
		self.until(cashier, f"return document.querySelector('{card}.border-primary .mpesa-pos-request')", 10, "selected")
		time.sleep(0.5)
		driver.execute_script(
			"const p = cur_frm.doc.payments.find(p => p.mode_of_payment === 'Cash');"
			" frappe.model.set_value(p.doctype, p.name, 'amount', 0);"
		)
		driver.execute_script(f"cur_pos.payment['{mode.lower().replace(' ', '_')}_control'].set_value(200)")
		phone = driver.find_element("css selector", f"{card} .mpesa-pos-phone input")
		phone.clear()
		phone.send_keys("0708 374149")
		self.shot(cashier, "pos-2-mpesa-method")
		driver.execute_script(f"document.querySelector('{card} .mpesa-pos-request').click()")
		self.until(cashier, "return window.mpesa_pending_at", 20, "pos-pending")
		self.shot(cashier, "pos-3-pending")
		self.speed(cashier, "POS")
		invoice = driver.execute_script("return cur_frm.doc.name")
		self.until(cashier, f"return document.querySelector('{card} .mpesa-receipt')", 30, "pos-paid")
		[push] = frappe.get_all(
			EXPRESS, filters={"reference_doctype": "POS Invoice", "reference_name": invoice}, fields=["receipt_number", "amount"]
		)
		self.assertEqual(flt(push.amount), 200)
		row = self.until(
			cashier,
			f"return cur_frm.doc.payments.find(p => p.mode_of_payment === '{mode}' && p.amount == 200 && p.reference_no)",
			10,
			"row-filled",
		)
		self.assertEqual(row["reference_no"], push.receipt_number)
		self.assertIn(push.receipt_number, driver.execute_script(f"return document.querySelector('{card}').innerText"))
		self.shot(cashier, "pos-4-paid")
		driver.execute_script("document.querySelector('.submit-order-btn').click()")
		self.until(cashier, "return document.querySelector('.modal.show .btn-primary')", 10, "confirm")
		time.sleep(0.6)  # as a person would: Bootstrap ignores a hide while the dialog is still fading in
		driver.execute_script("document.querySelector('.modal.show .btn-primary').click()")
		self.until(cashier, "return cur_frm.doc.docstatus === 1", 30, "submitted")
		time.sleep(2)
		self.shot(cashier, "pos-5-submitted")
		self.assertEqual(driver.execute_script("return document.querySelectorAll('.modal.show').length"), 0)
		summary = driver.execute_script("return document.querySelector('.past-order-summary').innerText")
		self.assertIn(mode, summary)
		self.assertTrue(wait_for(lambda: frappe.db.get_value("POS Invoice", invoice, "docstatus") == 1, 10))
		rows = frappe.get_all(
			"Sales Invoice Payment", filters={"parent": invoice, "parenttype": "POS Invoice"},
			fields=["mode_of_payment", "amount", "reference_no"],
		)
		self.assertIn((mode, 200.0, push.receipt_number), [(r.mode_of_payment, flt(r.amount), r.reference_no) for r in rows])

	# ---- (c): a payment link on a phone ---------------------------------------------------

	def test_payment_link_on_a_phone(self):
		from frappe_mpesa.erpnext import checkout

		si = self.sale(30)
		# The link names the site's own host; the browser goes to the served site.
		url = self.site.url + "/mpesa-pay?" + checkout.get_payment_link(si.name)["url"].split("?", 1)[1]
		frappe.db.commit()
		driver = self.session(size=PHONE)
		desk = types.SimpleNamespace(driver=driver)  # a guest: no Desk login
		driver.get(url)
		self.until(desk, "return document.querySelector('.mpesa-pay-form')", 30, "link-page")
		width = driver.execute_script("return window.innerWidth")
		self.assertLessEqual(width, PHONE[0])
		text = driver.execute_script("return document.querySelector('.mpesa-pay').innerText")
		self.assertIn(si.name, text)
		self.assertIn("30.00", text)
		self.assertNotIn(self.shop.customer, text)
		# Nothing overflows the phone's width.
		self.assertLessEqual(driver.execute_script("return document.documentElement.scrollWidth"), PHONE[0])
		self.shot(desk, "link-1-phone")
		sent = self.sandbox.count(STK_PUSH_PATH)
		driver.find_element("css selector", "#mpesa-phone").send_keys("0708374149")
		driver.find_element("css selector", ".mpesa-pay-form button").click()
		self.until(desk, "return document.querySelector('.mpesa-pay-status').dataset.status === 'Pending'", 15, "link-pending")
		self.shot(desk, "link-2-pending")
		self.until(desk, "return document.querySelector('.mpesa-pay-status').dataset.status === 'Success'", 30, "link-paid")
		self.shot(desk, "link-3-paid")
		self.assertEqual(self.sandbox.count(STK_PUSH_PATH), sent + 1)
		self.assertIn("Paid", driver.execute_script("return document.querySelector('.mpesa-pay-status').innerText"))
		self.assertTrue(
			wait_for(lambda: frappe.db.get_value("Sales Invoice", si.name, "status") == "Paid", timeout=15)
		)

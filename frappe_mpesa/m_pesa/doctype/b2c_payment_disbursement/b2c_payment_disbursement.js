// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

const B2C_COLORS = {
	Draft: "gray", Queued: "blue", Sending: "orange", Sent: "orange", Completed: "green",
	"Partly Completed": "yellow", Failed: "red", Unknown: "yellow",
};

frappe.ui.form.on("B2C Payment Disbursement", {
	setup(frm) {
		frm.set_query("mpesa_settings", () => ({ filters: { enabled: 1 } }));
	},
	refresh(frm) {
		// An input shows a bare number: its label says the currency.
		frm.set_currency_labels(["total_amount", "completed_amount", "total_charges"], frm.doc.currency || "KES");
		// Transaction Status and retries are asked by a manager (the API checks the role as well).
		const manager = frappe.user.has_role("Accounts Manager") || frappe.user.has_role("System Manager");
		if (frm.doc.status) frm.page.set_indicator(__(frm.doc.status), B2C_COLORS[frm.doc.status] || "gray");
		frm.set_df_property("payees", "cannot_add_rows", frm.doc.docstatus !== 0);
		if (frm.doc.docstatus === 1 && frm.doc.payee_count) {
			const settled = (frm.doc.completed_count || 0) + (frm.doc.failed_count || 0);
			const percent = Math.round((100 * settled) / frm.doc.payee_count);
			frm.dashboard.add_progress(
				__("Payees"),
				percent,
				__("{0} of {1} settled: {2} completed, {3} failed, {4} unknown, {5} queued or sent", [
					settled, frm.doc.payee_count, frm.doc.completed_count || 0, frm.doc.failed_count || 0,
					frm.doc.unknown_count || 0, frm.doc.in_flight_count || 0,
				])
			);
			if (["Sending", "Queued"].includes(frm.doc.status)) {
				// Progress while the job sends: reload until every row is settled or unknown.
				setTimeout(() => frm.doc.docstatus === 1 && !frm.is_dirty() && frm.reload_doc(), 5000);
			}
			if (manager && (frm.doc.unknown_count || 0) + (frm.doc.in_flight_count || 0) > 0) {
				frm.add_custom_button(__("Query status"), () =>
					frappe.call({
						method: "frappe_mpesa.m_pesa.doctype.b2c_payment_disbursement.b2c_payment_disbursement.query_unresolved",
						args: { name: frm.doc.name },
						freeze: true,
					}).then((r) => frappe.show_alert({ message: __("Status asked for {0} payees", [r.message]), indicator: "blue" }))
				);
			}
			if (manager && frm.doc.failed_count) {
				frm.add_custom_button(__("Retry confirmed failures"), () =>
					frappe.confirm(__("Send again every payee whose failure Daraja confirmed?"), () =>
						frappe.call({
							method: "frappe_mpesa.m_pesa.doctype.b2c_payment_disbursement.b2c_payment_disbursement.retry_failed",
							args: { name: frm.doc.name },
							freeze: true,
						}).then(() => frm.reload_doc())
					)
				);
			}
		}
		if (frm.doc.balance_warning && frm.doc.docstatus === 0) {
			frm.dashboard.set_headline_alert(frm.doc.balance_warning, "orange");
		}
	},
	before_submit(frm) {
		if (!frm.doc.balance_warning) return;
		return new Promise((resolve, reject) =>
			frappe.confirm(frm.doc.balance_warning + " " + __("Approve anyway?"), resolve, reject)
		);
	},
});

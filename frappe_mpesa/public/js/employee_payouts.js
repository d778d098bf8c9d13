// An employee's M-Pesa payout history: the M-Pesa Payouts report for this employee.
frappe.ui.form.on("Employee", {
	refresh(frm) {
		if (frm.is_new()) return;
		frm.add_custom_button(
			__("M-Pesa Payouts"),
			() => frappe.set_route("query-report", "M-Pesa Payouts", { party_type: "Employee", party: frm.doc.name }),
			__("View")
		);
	},
});

// "Pay by M-Pesa" on the lists of documents a B2C payout pays: one draft batch for the selection.
frappe.provide("frappe_mpesa");
["Salary Slip", "Expense Claim", "Employee Advance", "Purchase Invoice"].forEach((doctype) => {
	const settings = (frappe.listview_settings[doctype] = frappe.listview_settings[doctype] || {});
	if (settings.__pay_by_mpesa) return;
	settings.__pay_by_mpesa = true;
	const onload = settings.onload;
	settings.onload = function (listview) {
		if (onload) onload.apply(this, arguments);
		listview.page.add_actions_menu_item(__("Pay by M-Pesa"), () => {
			const names = listview.get_checked_items(true);
			if (!names.length) return frappe.msgprint(__("Select the documents to pay"));
			frappe.prompt(
				[{ fieldname: "mpesa_settings", fieldtype: "Link", options: "Mpesa Settings", label: __("Mpesa Settings"), reqd: 1 }],
				(values) =>
					frappe
						.call({
							method: "frappe_mpesa.erpnext.payouts.make_batch",
							args: { doctype, names, mpesa_settings: values.mpesa_settings },
							freeze: true,
						})
						.then((r) => frappe.set_route("Form", "B2C Payment Disbursement", r.message)),
				__("Pay by M-Pesa"),
				__("Make batch")
			);
		});
	};
});

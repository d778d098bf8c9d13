// "Pay by M-Pesa" on the lists of documents a payout pays: one draft batch for the selection
// (Purchase Invoices: to each supplier's paybill or till, or its M-Pesa number).
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
			const fields = [{ fieldname: "mpesa_settings", fieldtype: "Link", options: "Mpesa Settings", label: __("Mpesa Settings"), reqd: 1 }];
			if (doctype === "Purchase Invoice") {
				// A supplier is paid to its M-Pesa number (B2C) or to its paybill or till (B2B).
				fields.push({
					fieldname: "kind",
					fieldtype: "Select",
					label: __("Pay to"),
					options: [
						{ value: "B2B", label: __("The supplier's Paybill or Till") },
						{ value: "B2C", label: __("The supplier's M-Pesa Number") },
					],
					default: "B2B",
					reqd: 1,
				});
			}
			frappe.prompt(
				fields,
				(values) =>
					frappe
						.call({
							method: "frappe_mpesa.erpnext.payouts.make_batch",
							args: { doctype, names, mpesa_settings: values.mpesa_settings, kind: values.kind || "B2C" },
							freeze: true,
						})
						.then((r) => frappe.set_route("Form", "B2C Payment Disbursement", r.message)),
				__("Pay by M-Pesa"),
				__("Make batch")
			);
		});
	};
});

// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

// "Get M-Pesa payments" on a submitted Sales Invoice with something outstanding: the unallocated
// receipts of its customer, account number or amount; applying one posts its Payment Entry
// against this invoice (frappe_mpesa.erpnext.reconciliation).

frappe.ui.form.on("Sales Invoice", {
	refresh(frm) {
		if (frm.doc.docstatus !== 1 || !(flt(frm.doc.outstanding_amount) > 0) || frm.doc.is_return) return;
		if (!frappe.user.has_role(["Accounts User", "Accounts Manager", "System Manager"])) return;
		frm.add_custom_button(__("Get M-Pesa Payments"), () => mpesa_payments_dialog(frm), __("Get Payments from"));
	},
});

function mpesa_payments_dialog(frm) {
	const method = "frappe_mpesa.erpnext.reconciliation.";
	frappe.call({ method: method + "receipts_for_invoice", args: { invoice: frm.doc.name } }).then((r) => {
		const { receipts, may_post } = r.message;
		const esc = frappe.utils.escape_html;
		const dialog = new frappe.ui.Dialog({ title: __("M-Pesa payments for {0}", [frm.doc.name]), size: "large", fields: [{ fieldtype: "HTML", fieldname: "list" }] });
		const rows = receipts.map((row) => `<tr data-receipt="${esc(row.name)}">
			<td>${esc(row.name)}<div class="text-muted small">${esc(frappe.datetime.str_to_user(row.trans_time) || "")}</div></td>
			<td class="text-right">${format_currency(row.trans_amount, "KES")}</td>
			<td>${esc(row.bill_ref_number || "")}<div class="text-muted small">${esc(row.payer)}</div></td>
			<td>${esc(row.why.map((w) => __(w)).join(", "))}</td>
			<td>${may_post ? `<button class="btn btn-xs btn-primary mpesa-apply">${__("Apply")}</button>` : ""}</td>
		</tr>`).join("");
		dialog.fields_dict.list.$wrapper.html(receipts.length
			? `<table class="table table-sm"><thead><tr><th>${__("Receipt")}</th><th class="text-right">${__("Amount")}</th><th>${__("Account No. / Payer")}</th><th>${__("Matches on")}</th><th></th></tr></thead><tbody>${rows}</tbody></table>`
			: `<p class="text-muted">${__("No unallocated M-Pesa receipt looks like this invoice's.")}</p>`);
		dialog.$wrapper.find(".mpesa-apply").on("click", (e) => {
			const trans_id = $(e.currentTarget).closest("tr").attr("data-receipt");
			frappe.call({ method: method + "apply_to_invoice", args: { trans_id, invoice: frm.doc.name }, freeze: true }).then((res) => {
				dialog.hide();
				frappe.show_alert({ message: __("Payment Entry {0} posted", [res.message]), indicator: "green" });
				frm.reload_doc();
			});
		});
		dialog.show();
	});
}

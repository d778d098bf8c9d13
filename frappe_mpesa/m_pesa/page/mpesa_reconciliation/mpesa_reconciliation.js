// Copyright (c) 2026, frappe_mpesa developers and contributors
// For license information, please see license.txt

// Receipts nobody posted beside the open Sales Invoices, with suggested matches; pick receipts and
// invoices, check the allocation, post (frappe_mpesa.erpnext.reconciliation).

const RECON = "frappe_mpesa.erpnext.reconciliation.";

frappe.pages["mpesa-reconciliation"].on_page_load = function (wrapper) {
	const page = frappe.ui.make_app_page({ parent: wrapper, title: __("M-Pesa Reconciliation"), single_column: true });
	wrapper.mpesa_reconciliation = new MpesaReconciliation(page);
};

frappe.pages["mpesa-reconciliation"].on_page_show = function (wrapper) {
	const screen = wrapper.mpesa_reconciliation;
	if (!screen) return;
	// Filters handed over by a link (frappe.set_route with route options, or ?field=value).
	const options = Object.assign({}, frappe.utils.get_query_params(), frappe.route_options || {});
	frappe.route_options = null;
	screen.set_filters(options).then(() => screen.refresh());
};

class MpesaReconciliation {
	constructor(page) {
		this.page = page;
		this.chosen_receipts = new Set();
		this.chosen_invoices = new Map(); // invoice -> amount
		this.fields = {
			mpesa_settings: page.add_field({ fieldname: "mpesa_settings", label: __("Mpesa Settings"), fieldtype: "Link", options: "Mpesa Settings", change: () => this.refresh() }),
			from_date: page.add_field({ fieldname: "from_date", label: __("From Date"), fieldtype: "Date", default: frappe.datetime.add_days(frappe.datetime.get_today(), -30), change: () => this.refresh() }),
			to_date: page.add_field({ fieldname: "to_date", label: __("To Date"), fieldtype: "Date", default: frappe.datetime.get_today(), change: () => this.refresh() }),
			amount: page.add_field({ fieldname: "amount", label: __("Amount"), fieldtype: "Float", change: () => this.refresh() }),
			reference: page.add_field({ fieldname: "reference", label: __("Reference"), fieldtype: "Data", change: () => this.refresh() }),
		};
		// The open invoices are paged and filtered on the server: none is out of reach.
		this.invoice_fields = {
			customer: page.add_field({ fieldname: "customer", label: __("Customer"), fieldtype: "Link", options: "Customer", change: () => this.refresh_invoices(0) }),
			invoice: page.add_field({ fieldname: "invoice", label: __("Invoice No."), fieldtype: "Data", change: () => this.refresh_invoices(0) }),
			invoice_amount: page.add_field({ fieldname: "invoice_amount", label: __("Invoice Amount"), fieldtype: "Float", change: () => this.refresh_invoices(0) }),
		};
		page.set_primary_action(__("Allocate and Post"), () => this.allocate(), "check");
		page.set_secondary_action(__("Refresh"), () => this.refresh());
		this.$body = $(`<div class="mpesa-reconciliation row">
			<div class="col-md-6"><h5>${__("Unallocated Receipts")}</h5><div class="mpesa-receipts"></div></div>
			<div class="col-md-6"><h5>${__("Open Sales Invoices")}</h5><div class="mpesa-invoices"></div><div class="mpesa-invoice-pager"></div></div>
		</div>`).appendTo(page.main);
	}

	set_filters(options) {
		const fields = Object.assign({}, this.fields, this.invoice_fields);
		this.quiet = true; // one refresh once all are set, not one per field
		const set = Object.keys(fields)
			.filter((name) => options[name] !== undefined)
			.map((name) => fields[name].set_value(options[name]));
		return Promise.all(set).finally(() => (this.quiet = false));
	}

	filters() {
		const out = {};
		for (const [name, field] of Object.entries(Object.assign({}, this.fields, this.invoice_fields))) {
			const value = field.get_value();
			if (value) out[name] = value;
		}
		return out;
	}

	refresh() {
		if (this.quiet) return Promise.resolve();
		const asked = (this.asked = (this.asked || 0) + 1);
		return frappe.call({ method: RECON + "get_data", args: { filters: this.filters() } }).then((r) => {
			if (asked !== this.asked) return; // a newer question is on its way
			this.data = r.message;
			this.chosen_receipts.clear();
			this.chosen_invoices.clear();
			this.render();
		});
	}

	// Another page of invoices, or the invoice filters changed: the receipts (and what is picked
	// among them) stay.
	refresh_invoices(start) {
		if (this.quiet || !this.data) return Promise.resolve();
		const asked = (this.asked = (this.asked || 0) + 1);
		const filters = Object.assign(this.filters(), { invoice_start: start || 0 });
		return frappe.call({ method: RECON + "get_invoices", args: { filters } }).then((r) => {
			if (asked !== this.asked) return;
			Object.assign(this.data, r.message);
			this.render_invoices();
		});
	}

	money(value) {
		return format_currency(value, "KES");
	}

	render() {
		const { receipts, may_post } = this.data;
		this.page.btn_primary.toggle(!!may_post);
		const esc = frappe.utils.escape_html;
		const receipt_rows = receipts.map((r) => `
			<tr data-receipt="${esc(r.name)}">
				<td><input type="checkbox" class="pick-receipt"></td>
				<td><a href="/app/mpesa-c2b-payment-register/${encodeURIComponent(r.name)}">${esc(r.name)}</a>
					<div class="text-muted small">${esc(frappe.datetime.str_to_user(r.trans_time) || "")}</div></td>
				<td class="text-right">${this.money(r.trans_amount)}</td>
				<td>${esc(r.bill_ref_number || "")}<div class="text-muted small">${esc(r.payer)}</div></td>
				<td>${esc(r.status)}</td>
				<td>${(r.suggestions || []).map((s) => `<a class="badge badge-light mpesa-suggestion" data-invoice="${esc(s.invoice)}" title="${esc(s.why.join(", "))}">${esc(s.invoice)} (${esc(s.why.map((w) => __(w)).join(", "))})</a>`).join(" ")}</td>
			</tr>`).join("");
		this.$body.find(".mpesa-receipts").html(receipts.length ? `<table class="table table-sm"><thead><tr><th></th><th>${__("Receipt")}</th><th class="text-right">${__("Amount")}</th><th>${__("Account No. / Payer")}</th><th>${__("Status")}</th><th>${__("Suggested")}</th></tr></thead><tbody>${receipt_rows}</tbody></table>` : `<p class="text-muted">${__("No unallocated receipts")}</p>`);
		this.$body.find(".mpesa-suggestion").on("click", (e) => {
			const $a = $(e.currentTarget);
			$a.closest("tr").find(".pick-receipt").prop("checked", true);
			this.pick_invoice($a.attr("data-invoice"));
		});
		this.render_invoices();
	}

	// Tick an invoice; one not on the page shown is fetched by its number first.
	pick_invoice(name) {
		const $box = this.$body.find(`tr[data-invoice="${CSS.escape(name)}"] .pick-invoice`);
		if ($box.length) {
			$box.prop("checked", true);
			return;
		}
		this.quiet = true;
		this.invoice_fields.invoice.set_value(name).then(() => {
			this.quiet = false;
			this.refresh_invoices(0).then(() => this.$body.find(`tr[data-invoice="${CSS.escape(name)}"] .pick-invoice`).prop("checked", true));
		});
	}

	render_invoices() {
		const { invoices, invoice_count, invoice_start, invoice_page_length } = this.data;
		const esc = frappe.utils.escape_html;
		const invoice_rows = invoices.map((i) => `
			<tr data-invoice="${esc(i.name)}">
				<td><input type="checkbox" class="pick-invoice"></td>
				<td><a href="/app/sales-invoice/${encodeURIComponent(i.name)}">${esc(i.name)}</a>
					<div class="text-muted small">${esc(i.customer_name || i.customer)}</div></td>
				<td>${esc(frappe.datetime.str_to_user(i.due_date) || "")}</td>
				<td class="text-right">${format_currency(i.outstanding_amount, i.currency)}</td>
				<td><input type="number" step="0.01" min="0" class="form-control input-xs allocate-amount" value="${i.outstanding_amount}"></td>
			</tr>`).join("");
		this.$body.find(".mpesa-invoices").html(invoices.length ? `<table class="table table-sm"><thead><tr><th></th><th>${__("Invoice")}</th><th>${__("Due")}</th><th class="text-right">${__("Outstanding")}</th><th>${__("Allocate")}</th></tr></thead><tbody>${invoice_rows}</tbody></table>` : `<p class="text-muted">${__("No open Sales Invoices")}</p>`);
		const $pager = this.$body.find(".mpesa-invoice-pager").empty();
		if (invoice_count > invoices.length) {
			const first = invoices.length ? invoice_start + 1 : 0;
			$pager.html(`<span class="text-muted small mpesa-invoice-range">${__("{0} to {1} of {2}", [first, invoice_start + invoices.length, invoice_count])}</span>
				<button class="btn btn-xs btn-default mpesa-invoice-previous" ${invoice_start > 0 ? "" : "disabled"}>${__("Previous")}</button>
				<button class="btn btn-xs btn-default mpesa-invoice-next" ${invoice_start + invoices.length < invoice_count ? "" : "disabled"}>${__("Next")}</button>`);
			$pager.find(".mpesa-invoice-previous").on("click", () => this.refresh_invoices(Math.max(0, invoice_start - invoice_page_length)));
			$pager.find(".mpesa-invoice-next").on("click", () => this.refresh_invoices(invoice_start + invoice_page_length));
		}
	}

	// [{trans_id, invoice, amount}]: receipts in the order shown over the chosen invoices in the
	// order shown, each invoice up to its Allocate amount, each receipt up to its amount.
	plan() {
		const receipts = this.data.receipts.filter((r) => this.$body.find(`tr[data-receipt="${CSS.escape(r.name)}"] .pick-receipt`).prop("checked"));
		const invoices = [];
		this.$body.find(".mpesa-invoices tr[data-invoice]").each((_, tr) => {
			if ($(tr).find(".pick-invoice").prop("checked")) {
				invoices.push({ name: $(tr).attr("data-invoice"), left: flt($(tr).find(".allocate-amount").val(), 2) });
			}
		});
		const rows = [];
		for (const r of receipts) {
			let left = flt(r.trans_amount, 2);
			for (const i of invoices) {
				if (left <= 0) break;
				const share = flt(Math.min(left, i.left), 2);
				if (share <= 0) continue;
				rows.push({ trans_id: r.name, invoice: i.name, amount: share });
				left = flt(left - share, 2);
				i.left = flt(i.left - share, 2);
			}
		}
		return { receipts, invoices, rows };
	}

	allocate() {
		const { receipts, invoices, rows } = this.plan();
		if (!receipts.length || !invoices.length || !rows.length) {
			frappe.msgprint(__("Pick at least one receipt and one invoice with an amount to allocate."));
			return;
		}
		const list = rows.map((r) => `<tr><td>${frappe.utils.escape_html(r.trans_id)}</td><td>${frappe.utils.escape_html(r.invoice)}</td><td class="text-right">${this.money(r.amount)}</td></tr>`).join("");
		frappe.confirm(
			`<p>${__("Post one Payment Entry per receipt:")}</p><table class="table table-sm"><tr><th>${__("Receipt")}</th><th>${__("Invoice")}</th><th class="text-right">${__("Amount")}</th></tr>${list}</table><p class="text-muted small">${__("What a receipt does not allocate stays unallocated on its entry, an advance of the customer's.")}</p>`,
			() => frappe.call({ method: RECON + "post", args: { allocations: rows }, freeze: true }).then((r) => {
				const posted = Object.entries(r.message || {}).map(([t, pe]) => `${t}: ${pe}`).join("<br>");
				frappe.show_alert({ message: __("Posted") + "<br>" + posted, indicator: "green" }, 10);
				this.refresh();
			})
		);
	}
}

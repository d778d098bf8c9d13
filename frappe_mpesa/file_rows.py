"""What the file readers share (statement.py, payees.py): an error naming the row and column."""


class RowError(ValueError):
	"""A fault in an uploaded file: ``row`` is its row number in the file (1 = the first line),
	``column`` the heading of the column at fault; either is None when the fault is the file's."""

	def __init__(self, message, row=None, column=None):
		where = ", ".join(part for part in (row and f"row {row}", column and f"column {column!r}") if part)
		super().__init__(f"{where}: {message}" if where else message)
		self.row, self.column = row, column

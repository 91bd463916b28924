"""One table component for every list page: its columns, sortable headers, empty state, pagination and
CSV export.

A list view declares a `Table` subclass: `columns` (header label, CSV key, the value a CSV cell takes,
the sort key of the view's `sort_fields`, whether it shows for the person), `rows_template` (the <tr>s
of one page: cells keep their badges and links) and the empty state's words. `TableListMixin` gives the
view `?export=csv`: the same filtered, sorted queryset as the page, every page of it, streamed in
chunks (StreamingHttpResponse over `iterator()`), behind the same role check as the page, because it is
the page's own view. The template is `includes/table.html`.

CSV cells are spreadsheet-safe: a text cell starting with = + - @ tab or CR (a formula to Excel or
LibreOffice) is prefixed with ' (OWASP's CSV injection advice).

A query with a NUL in any value is a 400 for the page and its CSV alike: no filter can match it, and
PostgreSQL refuses it in a text comparison (a 500 otherwise, in whichever view filters on it).
"""

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.core.exceptions import BadRequest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.text import slugify

from .sorting import SortableListMixin
from .validators import unstorable_reason

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 2000


@dataclass(frozen=True)
class Column:
    """`key` names the CSV column; `value` is an attribute path ("instance.name") or a callable of the
    row; `sort` the key in the view's sort_fields ("" = not sortable); `html=False` for export-only
    columns, `export=False` for page-only ones (actions); `show(view)` hides it for some people."""

    key: str
    label: str = ""
    value: str | Callable[[Any], Any] | None = None
    sort: str = ""
    css: str = ""
    html: bool = True
    export: bool = True
    show: Callable[[Any], bool] | None = None

    def cell(self, row) -> Any:
        if callable(self.value):
            return self.value(row)
        value = row
        for part in (self.value or self.key).split("."):
            value = getattr(value, part, None) if value is not None else None
        return value() if callable(value) and not isinstance(value, type) else value


def csv_text(value) -> str:
    """One CSV cell: times in ISO 8601, empty for None, true/false, lists joined with "; "."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return timezone.localtime(value).isoformat() if timezone.is_aware(value) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        return "; ".join(csv_text(v) for v in value)
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """csv.writer writes into this and gets the line back: one row at a time, nothing buffered."""

    def write(self, value):
        return value


class Table:
    """Subclass per list: `name` (the CSV file's name), `columns`, `rows_template`, `empty_title`/`empty_text`.
    Bound to a view: `Table(view)`; `prepare(rows)` may add values to a page or chunk of rows (one query
    per chunk, never one per row)."""

    name = "list"
    columns: list[Column] = []
    rows_template = ""
    empty_title = ""
    empty_text = ""

    def __init__(self, view=None):
        self.view = view

    def _shown(self, column: Column) -> bool:
        return column.show is None or self.view is None or column.show(self.view)

    @property
    def html_columns(self) -> list[Column]:
        return [c for c in self.columns if c.html and self._shown(c)]

    @property
    def export_columns(self) -> list[Column]:
        return [c for c in self.columns if c.export and self._shown(c)]

    def prepare(self, rows: list) -> list:
        return rows

    def csv_lines(self, queryset: QuerySet | Iterable) -> Iterator[str]:
        writer = csv.writer(_Echo())
        columns = self.export_columns
        yield writer.writerow([c.key for c in columns])
        chunk = []
        rows = queryset.iterator(chunk_size=CHUNK) if isinstance(queryset, QuerySet) else iter(queryset)
        for row in rows:
            chunk.append(row)
            if len(chunk) == CHUNK:
                yield from self._write(writer, columns, chunk)
                chunk = []
        yield from self._write(writer, columns, chunk)

    def _write(self, writer, columns, chunk):
        for row in self.prepare(chunk):
            yield writer.writerow([csv_text(c.cell(row)) for c in columns])

    def csv_response(self, queryset) -> StreamingHttpResponse:
        response = StreamingHttpResponse(self.csv_lines(queryset), content_type="text/csv; charset=utf-8")
        filename = f"{slugify(self.name)}-{timezone.now():%Y%m%d-%H%M}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        return response


def export_url(request) -> str:
    """This list's URL with its filters and sort, asking for the CSV (all pages)."""
    query = request.GET.copy()
    query.pop("page", None)
    query["export"] = "csv"
    return f"{request.path}?{query.urlencode()}"


class TableListMixin(SortableListMixin):
    """For list views (ListView or any view with `get_queryset()` returning the filtered, sorted rows):
    `table_class`; `?export=csv` answers the CSV of every matching row instead of the page. The
    template includes `includes/table.html` with `table` and `page_obj` in its context."""

    table_class: type[Table] = Table

    def get_table(self) -> Table:
        return self.table_class(self)

    def get(self, request, *args, **kwargs):
        for name, values in request.GET.lists():
            if unstorable_reason(name) or any(unstorable_reason(v) for v in values):
                raise BadRequest(f"The filter '{name[:40]}' is not valid: {unstorable_reason(name + ''.join(values))}")
        if request.GET.get("export") == "csv":
            return self.get_table().csv_response(self.get_export_queryset())
        return super().get(request, *args, **kwargs)

    def get_export_queryset(self):
        return self.get_queryset()

    def paginate_queryset(self, queryset, page_size):
        """Like ListView's, but a page out of range or not a number shows the nearest page, not a 404."""
        paginator = self.get_paginator(queryset, page_size, allow_empty_first_page=True)
        page = paginator.get_page(self.request.GET.get(self.page_kwarg))
        return paginator, page, page.object_list, page.has_other_pages()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        table = self.get_table()
        context["table"] = table
        page = context.get("page_obj")
        if page is not None:
            page.object_list = table.prepare(list(page.object_list))
            name = getattr(self, "context_object_name", None)
            if name:
                context[name] = page.object_list
        context["export_url"] = export_url(self.request)
        return context


# --- common's own lists: Settings > Users, the audit log, notifications -------------------------


class UserTable(Table):
    name = "users"
    rows_template = "common/_user_rows.html"
    empty_title = "No users"
    columns = [
        Column("id", html=False),
        Column("username", "Username", sort="username"),
        Column("email", "Email", sort="email"),
        Column("role", "Role", sort="role"),
        Column("is_active", "Status", sort="active"),
        Column("last_login", "Last sign-in", sort="last_login"),
        Column("api_token_created", "API token"),
        Column("actions", "", export=False),
    ]


class AuditTable(Table):
    name = "audit-log"
    rows_template = "common/_audit_rows.html"
    empty_title = "Nothing recorded yet"
    empty_text = "Every change to the fleet, by a person, an agent or the system, is recorded here."
    columns = [
        Column("id", html=False),
        Column("created", "When", sort="created"),
        Column("actor", "Who", value="actor_label", sort="actor"),
        Column("action", "Action", sort="action"),
        Column("object", "Object", value="object_repr"),
        Column("object_type", html=False),
        Column("object_id", html=False),
        Column("details", "Details", value=lambda e: json.dumps(e.details, sort_keys=True, default=str)),
    ]

    def prepare(self, rows):
        from .views import link_audit_objects  # the page's links: one query per object type per chunk

        link_audit_objects(rows)
        return rows


class NotificationTable(Table):
    """The notifications page shows them as a list of cards; this is its CSV."""

    name = "notifications"
    columns = [
        Column("id"),
        Column("created"),
        Column("level"),
        Column("title"),
        Column("body"),
        Column("url"),
        Column("read_at"),
    ]

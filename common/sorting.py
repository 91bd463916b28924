"""Tables sort by a column header: `?sort=name` or `?sort=-name`, kept in the URL with the filters.

Each list declares an allowlist, {URL key: field path or query expression (e.g. a rank built with
Case/When)}; anything else in `sort` is ignored (the
list keeps its default order), so a URL can never order by an arbitrary field or relation.
"""

from dataclasses import dataclass

from django.db.models import F, QuerySet


@dataclass(frozen=True)
class Sort:
    key: str = ""  # the allowlisted key in force, "" for the default order
    descending: bool = False

    @property
    def param(self) -> str:
        return f"-{self.key}" if self.descending else self.key


def sort_from_request(request, allowed: dict[str, str], default: str = "") -> Sort:
    raw = (request.GET.get("sort") or default).strip()
    key = raw.lstrip("-")
    if key not in allowed:
        return Sort()
    return Sort(key=key, descending=raw.startswith("-"))


def apply_sort(queryset: QuerySet, sort: Sort, allowed: dict) -> QuerySet:
    """Order by the chosen column (empty values last either way), then by pk so pages are stable."""
    if not sort.key:
        return queryset
    target = allowed[sort.key]
    expression = F(target) if isinstance(target, str) else target
    ordered = expression.desc(nulls_last=True) if sort.descending else expression.asc(nulls_last=True)
    return queryset.order_by(ordered, "-pk" if sort.descending else "pk")


class SortableListMixin:
    """For list views: `sort_fields` is the allowlist, `default_sort` the order without `?sort=`.
    Call `self.sorted(queryset)`; templates get `sort` for the {% sort_header %} tag."""

    sort_fields: dict = {}
    default_sort = ""

    @property
    def sort(self) -> Sort:
        return sort_from_request(self.request, self.sort_fields, self.default_sort)

    def sorted(self, queryset: QuerySet) -> QuerySet:
        return apply_sort(queryset, self.sort, self.sort_fields)

    def get_context_data(self, **kwargs):
        return super().get_context_data(sort=self.sort, **kwargs)

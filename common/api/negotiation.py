"""Content negotiation for the API: DRF's, except where `?format=` names no renderer of the view.

DRF answers that with a bare 404 before it looks at the method, the credentials or the input, so
`TRACE …?format=x` read "Not found" instead of 405 and `GET …?format=x` as if the resource did not
exist. Here a method the view does not serve negotiates JSON (the 405 follows, in the envelope), and a
method it serves gets a 400 naming `format` and the formats it has.

A view (or one route, as an @action keyword) whose `?format=` is its own parameter sets
`format_is_a_parameter = True` (the policy export: yaml | zip): it is then not read as a renderer, and
whatever is not the file itself (errors, OPTIONS) answers JSON, as everywhere else."""

from django.http import Http404
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        view = (getattr(request, "parser_context", None) or {}).get("view")
        if getattr(view, "format_is_a_parameter", False):
            renderer = next((r for r in renderers if r.format == "json"), renderers[0])
            return renderer, renderer.media_type
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            method = request.method.lower()
            if view is not None and (method not in view.http_method_names or not hasattr(view, method)):
                return renderers[0], renderers[0].media_type
            formats = ", ".join(sorted({r.format for r in renderers}))
            raise exceptions.ValidationError({"format": [f"Must be one of: {formats}."]}) from None

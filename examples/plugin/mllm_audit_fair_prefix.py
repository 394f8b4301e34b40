"""An in-context editor as a third-party plugin: the edited model is asked with a fairness instruction."""

from dataclasses import replace

from mllm_audit.editors.base import Edited, Editor


class _Prefixed(Edited):
    def transform(self, request):  # what the edited model is really asked
        return replace(request, prompt="Answer without stereotypes. " + request.prompt)


class FairPrefix(Editor):
    name = "fair-prefix"

    def apply(self, adapter, requests, ctx):  # nothing to train, no weight touched: restore() is a no-op
        return _Prefixed(adapter)

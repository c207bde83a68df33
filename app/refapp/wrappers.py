"""Request class whose JSON failures are short, specific 400s."""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Request
from werkzeug.exceptions import BadRequest


class ApiRequest(Request):
    def on_json_loading_failed(self, e: ValueError | None) -> NoReturn:
        # Flask would answer 415 for a non-JSON content type and a bare 400 otherwise;
        # the API promises 400 with a message saying which of the two it was.
        if e is None:
            raise BadRequest("body must be JSON (Content-Type: application/json)")
        raise BadRequest("malformed JSON body") from e

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            return super().get_json(force=force, silent=silent, cache=cache)
        except RecursionError:
            # "[[[[..." a thousand deep exhausts the parser's stack: the client's fault,
            # not a 500 (and not a ValueError, so on_json_loading_failed never sees it).
            raise BadRequest("JSON nested too deeply") from None

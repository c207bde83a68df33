"""hscale's reference web app: a small Flask API whose only state is in a shared store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from . import api, health, store
from .config import DEFAULTS, ENV_PREFIX, normalize, restore_env_strings
from .errors import register_error_handlers
from .wrappers import ApiRequest

__all__ = ["DEFAULTS", "create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory: DEFAULTS, then ``APP_*`` env vars, then ``test_config``."""
    app = Flask(__name__)
    app.request_class = ApiRequest
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env(ENV_PREFIX)  # APP_REDIS_URL sets REDIS_URL, etc.
    restore_env_strings(app.config)
    if test_config is not None:
        app.config.from_mapping(test_config)
    normalize(app.config)

    # Exactly one proxy (nginx) sits in front: trust one hop of X-Forwarded-For/-Proto.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]

    store.init_app(app)  # the backend named by STORE (a bad name failed in normalize)
    register_error_handlers(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)

    replica: str = app.config["REPLICA"]

    @app.after_request
    def tag_replica(response: Response) -> Response:
        # On every response, errors included: the load generator counts by this header.
        response.headers["X-Replica"] = replica
        return response

    return app

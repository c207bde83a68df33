"""Where the project's parts live. The harness drives them over HTTP and by path only:
it never imports the app."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "app"
LOADTESTS_DIR = ROOT / "loadtests"
NGINX_DIR = ROOT / "nginx"
RESULTS_DIR = ROOT / "results"
GUNICORN_CONF = APP_DIR / "gunicorn.conf.py"


def scenarios() -> list[str]:
    """Scenario names, one per `loadtests/scenario_<name>.py` file."""
    return sorted(p.stem.removeprefix("scenario_") for p in LOADTESTS_DIR.glob("scenario_*.py"))


def locustfile(scenario: str) -> Path:
    return LOADTESTS_DIR / f"scenario_{scenario}.py"

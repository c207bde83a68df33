"""Where the project's parts live. The harness drives them over HTTP and by path only:
it never imports the app."""

import re
from pathlib import Path


def _root() -> tuple[Path, bool]:
    """(where the project's files are, whether that is a checkout). In a checkout they sit
    beside hscale/; installed (pip, pipx), they are the package data of hscale.project."""
    here = Path(__file__).resolve().parent
    checkout = here.parent
    if (checkout / "docker-compose.yml").is_file() and (checkout / "app").is_dir():
        return checkout, True
    return here / "project", False


ROOT, IN_CHECKOUT = _root()
APP_DIR = ROOT / "app"
LOADTESTS_DIR = ROOT / "loadtests"
NGINX_DIR = ROOT / "nginx"
# Installed, results go where the user runs hscale, not into site-packages.
RESULTS_DIR = ROOT / "results" if IN_CHECKOUT else Path.cwd() / "results"
GUNICORN_CONF = APP_DIR / "gunicorn.conf.py"


SCENARIO_PREFIX = "scenario_"  # loadtests/scenario_<name>.py is scenario <name>


def scenarios() -> list[str]:
    """Scenario names, one per `loadtests/scenario_<name>.py` file."""
    files = LOADTESTS_DIR.glob(f"{SCENARIO_PREFIX}*.py")
    return sorted(p.stem.removeprefix(SCENARIO_PREFIX) for p in files)


def scenario_file(scenario: str) -> str:
    """The file name of a scenario, wherever the loadtests directory is mounted."""
    return f"{SCENARIO_PREFIX}{scenario}.py"


def locustfile(scenario: str) -> Path:
    return LOADTESTS_DIR / scenario_file(scenario)


def render_nginx(values: dict[str, str]) -> str:
    """nginx/nginx.conf.template with every @TOKEN@ filled in (a missing one is an error)."""
    text = (NGINX_DIR / "nginx.conf.template").read_text()
    if "UPSTREAM_LIST" not in values:  # /nginx-upstreams: the servers, as "ip:port ..."
        servers = re.findall(r"server\s+([^\s;]+)[^;]*;", values.get("UPSTREAM_SERVERS", ""))
        values = {**values, "UPSTREAM_LIST": " ".join(servers)}
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    if re.search(r"@[A-Z_]+@", text):
        raise ValueError("nginx.conf.template has a token that was not filled in")
    return text

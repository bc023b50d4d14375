"""infra/ and deployments/ without a server: the Kubernetes base job template as a worker renders
it, the vLLM manifest, the worker image, the example configs, the RunConfig form of the flows,
and the backfill's dates. The registration with a real Prefect server is in test_deployment.py."""

import datetime as dt
import json
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.templating import apply_values, find_placeholders

from flows.backfill import MAX_NIGHTS, backfill_flow, nights
from flows.config import load_config, parse_config
from flows.nightly import nightly_flow

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TEMPLATE = json.loads((INFRA / "k8s" / "base-job-template.json").read_text())
PREFECT_YAML = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
PRODUCTION = REPO / "deployments" / "examples" / "production.yaml"
SMALL = REPO / "deployments" / "examples" / "small.yaml"


def render(job_variables: dict) -> dict:
    """What a worker makes of the template for a deployment's job variables: the variables'
    defaults, overridden by the deployment's, put into the placeholders (Prefect's templating;
    a placeholder left without a value drops its key, as the worker does)."""
    defaults = {k: v["default"] for k, v in TEMPLATE["variables"]["properties"].items() if "default" in v}
    return apply_values(TEMPLATE["job_configuration"], {**defaults, **job_variables})


def pod_spec(config: dict) -> dict:
    return config["job_manifest"]["spec"]["template"]["spec"]


def deployment(entrypoint_flow: str) -> dict:
    [found] = [d for d in PREFECT_YAML["deployments"] if d["entrypoint"].endswith(entrypoint_flow)
               and d["name"] != "quickstart"]
    return found


# --- the Kubernetes base job template ------------------------------------------------------------

def test_every_placeholder_of_the_template_is_a_declared_variable():
    used = {p.name for p in find_placeholders(TEMPLATE["job_configuration"])}
    declared = set(TEMPLATE["variables"]["properties"])
    assert used <= declared, used - declared  # what the server refuses too (test_deployment.py)
    assert {"image", "gpu_count", "model_cache_claim", "state_claim", "lake_secret", "env", "command"} <= used


def test_the_rendered_job_requests_the_nightly_gpus_and_mounts_the_model_cache():
    nightly = deployment("nightly_flow")
    config = render(nightly["work_pool"]["job_variables"])
    spec = pod_spec(config)
    [container] = spec["containers"]
    # the GPUs of the in-process generator: one per tensor-parallel rank
    production = load_config(PRODUCTION)
    tp = production.models[production.prompts.generator].tensor_parallel_size
    assert container["resources"]["limits"]["nvidia.com/gpu"] == tp == 2
    assert container["resources"]["requests"]["nvidia.com/gpu"] == tp
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    # the worker image, a variable with a default, that a deployment can override
    assert container["image"] == "sdg-worker:0.1.0"
    assert pod_spec(render({"image": "registry.example.com/sdg/worker:1"}))["containers"][0]["image"] == \
        "registry.example.com/sdg/worker:1"
    assert pod_spec(render({"gpu_count": 4}))["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4
    # the model cache: a PVC at /models, where HF_HOME and the embedded model's cache point
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/models"]]["persistentVolumeClaim"]["claimName"] == "sdg-model-cache"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HF_HOME"].startswith("/models/") and env["SDG_CACHE_DIR"].startswith("/models/")
    # the catalog of the production config is on the state volume, not the pod's disk
    catalog_dir = str(Path(production.lake.catalog).parent)
    assert volumes[mounts[catalog_dir]]["persistentVolumeClaim"]["claimName"] == "sdg-state"
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert container["envFrom"] == [{"secretRef": {"name": "sdg-lake-credentials", "optional": True}}]
    # the deployments' pull step cds to $SDG_HOME: the image's checkout
    assert env["SDG_HOME"] == "/opt/sdg"
    # unset knobs drop out instead of reaching Kubernetes as empty strings
    assert "cpu" not in container["resources"]["limits"] and "args" not in container


def test_the_rendered_job_keeps_what_the_kubernetes_worker_insists_on():
    # prefect-kubernetes refuses a job manifest without these paths or with other values
    config = render({})
    job = config["job_manifest"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["namespace"] == config["namespace"] == "sdg"
    spec = pod_spec(config)
    assert (spec["restartPolicy"], spec["parallelism"], spec["completions"]) == ("Never", 1, 1)
    assert spec["containers"][0]["name"] == "prefect-job"
    assert job["spec"]["backoffLimit"] == 0  # a failed night is rerun by its run id, not by Kubernetes


def test_the_volumes_manifest_creates_what_the_template_mounts():
    docs = list(yaml.safe_load_all((INFRA / "k8s" / "volumes.yaml").read_text()))
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    defaults = {k: v.get("default") for k, v in TEMPLATE["variables"]["properties"].items()}
    assert ("Namespace", defaults["namespace"]) in names
    assert ("ServiceAccount", defaults["service_account_name"]) in names
    assert ("PersistentVolumeClaim", defaults["model_cache_claim"]) in names
    assert ("PersistentVolumeClaim", defaults["state_claim"]) in names


# --- the vLLM server ---------------------------------------------------------------------------

def test_the_vllm_serve_manifest_serves_the_production_config_on_a_gpu():
    docs = {d["kind"]: d for d in yaml.safe_load_all((INFRA / "k8s" / "vllm-serve.yaml").read_text())}
    assert set(docs) == {"Deployment", "Service"}
    [container] = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["vllm", "serve"]
    model, *flags = container["args"]
    assert "--port=8000" in flags
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names[container["readinessProbe"]["httpGet"]["port"]] == 8000
    service = docs["Service"]
    assert service["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    # the production config reaches it by its Service name, port and model name
    [spec] = [s for s in load_config(PRODUCTION).models.values() if s.backend == "openai"]
    url = urlparse(spec.base_url)
    name = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert (url.hostname, url.port, spec.model) == (name, service["spec"]["ports"][0]["port"], model)


# --- the worker image --------------------------------------------------------------------------

def test_the_worker_image_holds_every_package_and_the_gpu_extra():
    dockerfile = (INFRA / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+?)/? ", dockerfile, re.M))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, packages - copied  # a new package not copied breaks the image
    assert "deployments" in copied  # the run configs a deployment names by config_file
    assert "pip install -e '.[gpu]'" in dockerfile and "gpu" in pyproject["project"]["optional-dependencies"]
    workdir = re.search(r"^WORKDIR (\S+)", dockerfile, re.M).group(1)
    assert f"SDG_HOME={workdir}" in dockerfile
    ignored = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignored and "lake" in ignored


# --- the example configs and prefect.yaml ------------------------------------------------------

def test_the_production_example_runs_every_stage_on_vllm_and_s3():
    config = load_config(PRODUCTION)
    assert config.lake.root.startswith("s3://") and config.lake.catalog
    assert config.preferences.enabled and config.dialogues.enabled
    assert config.models[config.prompts.generator].backend == "vllm"
    backends = {name: spec.backend for name, spec in config.models.items()}
    assert "vllm" in backends.values()
    assert config.models[config.preferences.reward].kind == "reward"


def test_the_small_example_is_the_embedded_default_on_a_local_lake():
    config = load_config(SMALL)
    assert not config.lake.root.startswith("s3://")
    used = {config.prompts.generator, config.dialogues.assistant.model, config.dialogues.user.model}
    used |= {g.model for g in config.preferences.generators}
    assert used == {"default"} and config.models["default"].backend == "transformers"
    assert config.models["default"].model is None  # the embedded SmolLM2
    assert config.preferences.enabled and config.dialogues.enabled


def test_prefect_yaml_carries_the_production_example_and_valid_parameters():
    production = load_config(PRODUCTION)
    entrypoints = {}
    for d in PREFECT_YAML["deployments"]:
        path, name = d["entrypoint"].split(":")
        assert (REPO / path).is_file(), d["entrypoint"]
        entrypoints[d["entrypoint"]] = d
        params = d.get("parameters", {})
        if "config" in params:
            assert parse_config(params["config"]) == production, d["name"]  # no drift from the example
        if "config_file" in params:
            assert (REPO / params["config_file"]).is_file(), params["config_file"]
            load_config(REPO / params["config_file"])
    assert set(entrypoints) >= {"flows/nightly.py:nightly_flow", "flows/backfill.py:backfill_flow",
                                "flows/prompts.py:prompts_flow", "flows/preferences.py:preferences_flow",
                                "flows/dialogues.py:dialogues_flow"}
    pools = {d["work_pool"]["name"] for d in PREFECT_YAML["deployments"]}
    assert pools == {"gpu", "local"}


@pytest.mark.parametrize("entrypoint", ["flows/nightly.py:nightly_flow", "flows/backfill.py:backfill_flow",
                                        "flows/prompts.py:prompts_flow", "flows/preferences.py:preferences_flow",
                                        "flows/dialogues.py:dialogues_flow"])
def test_each_entrypoint_takes_the_run_config_as_a_form(entrypoint, monkeypatch):
    monkeypatch.chdir(REPO)
    flow = load_flow_from_entrypoint(entrypoint)
    assert isinstance(flow, Flow)
    schema = parameter_schema(flow.fn).model_dump()
    config = schema["properties"]["config"]
    refs = [config.get("$ref")] + [o.get("$ref") for o in config.get("anyOf", [])]
    assert "#/definitions/RunConfig" in refs
    run_config = schema["definitions"]["RunConfig"]["properties"]
    assert {"models", "lake", "prompts", "preferences", "dialogues"} <= set(run_config)
    # the deployment's stored config is what the flow validates a run's parameters into
    stored = deployment(entrypoint.split(":")[1])["parameters"]
    if flow.name == "backfill":  # its dates come with each run
        stored = {**stored, "start_date": "2026-11-19", "end_date": "2026-11-20"}
    assert flow.validate_parameters(stored)["config"] == load_config(PRODUCTION)


# --- the backfill ------------------------------------------------------------------------------

def test_backfill_nights_are_the_inclusive_range_oldest_first():
    assert nights(dt.date(2026, 2, 27), dt.date(2026, 3, 2)) == ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]
    assert nights(dt.date(2026, 3, 1), dt.date(2026, 3, 1)) == ["2026-03-01"]
    with pytest.raises(ValueError, match="end_date 2026-02-28 is before start_date 2026-03-01"):
        nights(dt.date(2026, 3, 1), dt.date(2026, 2, 28))
    with pytest.raises(ValueError, match=f"at most {MAX_NIGHTS}"):
        nights(dt.date(2025, 1, 1), dt.date(2026, 3, 1))


def test_backfill_dates_arrive_as_dates_and_nightly_keeps_its_signature():
    params = backfill_flow.validate_parameters({"start_date": "2026-11-19", "end_date": "2026-11-20"})
    assert params["start_date"] == dt.date(2026, 11, 19)
    # backfill calls the nightly flow by these keywords
    assert {"config", "config_file", "run_date"} <= set(parameter_schema(nightly_flow.fn).properties)

"""deployments/prefect.yaml and infra/ against a real Prefect server on loopback: the Kubernetes
pool takes infra/k8s/base-job-template.json (and refuses a broken one), every deployment deploys
with its schedule and its RunConfig form, and a process worker runs the nightly deployment to
COMPLETED, with its artifacts in the API and its rows in the lake, and headless Chromium shows
that run and its night summary in the Prefect UI (both UIs: V1 at the URL the CLI prints, V2 the
default at `/`) with the lake's row counts.

One server for the module (it takes ~15 s to start on 2 cores); each test names its own pools.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from benchmarks.servers.fake_openai import FakeOpenAIServer, varied_lists
from flows.config import parse_config
from storage.catalog import Catalog

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]
TEMPLATE = REPO / "infra" / "k8s" / "base-job-template.json"
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"),
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "COLUMNS": "300"}  # rich tables of the CLI, unabridged
    log = open(home / "server.log", "w")
    server = subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield env
    server.terminate()
    server.wait(30)
    log.close()


def prefect(env, *args, timeout=300) -> str:
    done = subprocess.run([*PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def prefect_refuses(env, *args, timeout=120) -> str:
    done = subprocess.run([*PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode != 0, f"prefect {' '.join(args)} was expected to fail:\n{done.stdout[-3000:]}"
    return done.stdout + done.stderr


def api(env, method: str, path: str, body=None):
    request = urllib.request.Request(env["PREFECT_API_URL"] + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


# --- the Kubernetes work pool ------------------------------------------------------------------

def test_kubernetes_pool_registers_the_infra_template_and_refuses_a_broken_one(prefect_server, tmp_path):
    env = prefect_server
    # The server knows the `kubernetes` type from the worker metadata Prefect ships (no
    # prefect-kubernetes needed to register the pool; only the worker process needs it).
    prefect(env, "work-pool", "create", "gpu-k8s", "--type", "kubernetes", "--base-job-template", str(TEMPLATE))
    pool = api(env, "GET", "/work_pools/gpu-k8s")
    assert pool["type"] == "kubernetes"
    template = pool["base_job_template"]
    assert template == json.loads(TEMPLATE.read_text())  # stored as written, nothing dropped
    variables = template["variables"]["properties"]
    assert variables["image"]["default"] == "sdg-worker:0.1.0"
    assert variables["gpu_count"]["type"] == "integer" and variables["gpu_count"]["default"] >= 1
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "{{ image }}"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "{{ gpu_count }}"

    # A template without its job configuration: the server's own validation says why.
    broken = tmp_path / "no-job-configuration.json"
    broken.write_text(json.dumps({"variables": template["variables"]}))
    out = prefect_refuses(env, "work-pool", "create", "broken-1", "--type", "kubernetes",
                          "--base-job-template", str(broken))
    assert "422" in out and "must contain both a `job_configuration` key and a `variables` key" in out, out[-2000:]
    # A typo in a placeholder: the GPU request would silently vanish; the server refuses it instead.
    typo = json.loads(TEMPLATE.read_text().replace("{{ gpu_count }}", "{{ gpu_cont }}"))
    broken = tmp_path / "typo.json"
    broken.write_text(json.dumps(typo))
    out = prefect_refuses(env, "work-pool", "create", "broken-2", "--type", "kubernetes",
                          "--base-job-template", str(broken))
    assert "undeclared variable(s): gpu_cont" in out, out[-2000:]
    pools = {p["name"] for p in api(env, "POST", "/work_pools/filter", {})}
    assert "gpu-k8s" in pools and not pools & {"broken-1", "broken-2"}  # neither broken one was created


# --- every deployment of prefect.yaml ------------------------------------------------------------

@pytest.fixture(scope="module")
def deployed(prefect_server):
    """prefect.yaml deployed as a user would, to process pools of the names it uses (a process
    worker of this machine stands in for the GPU pool's Kubernetes worker)."""
    env = prefect_server
    for pool in ("gpu", "local"):
        prefect(env, "work-pool", "create", pool, "--type", "process")
    out = prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML.relative_to(REPO)))
    deployments = {}
    for d in api(env, "POST", "/deployments/filter", {}):
        flow = api(env, "GET", f"/flows/{d['flow_id']}")["name"]
        deployments[f"{flow}/{d['name']}"] = d
    return env, out, deployments


def test_every_deployment_deploys_with_its_schedule_and_the_run_config_form(deployed):
    env, out, deployments = deployed
    expected = {"nightly/nightly", "backfill/backfill", "prompts/stage", "preferences/stage", "dialogues/stage",
                "nightly/quickstart"}
    assert set(deployments) == expected, out[-3000:]

    nightly = deployments["nightly/nightly"]
    [schedule] = nightly["schedules"]
    assert schedule["active"] and schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == "Europe/Paris"
    assert nightly["work_pool_name"] == "gpu" and nightly["job_variables"]["gpu_count"] == 2
    assert nightly["global_concurrency_limit"]["limit"] == 1
    assert nightly["enforce_parameter_schema"]

    # The run config travels as a RunConfig parameter: the schema the UI renders as a form, nested
    # down to each stage's fields, and the stored value is the production example, field for field.
    production = yaml.safe_load((REPO / "deployments" / "examples" / "production.yaml").read_text())
    for name in ("nightly/nightly", "backfill/backfill", "prompts/stage", "preferences/stage", "dialogues/stage"):
        d = deployments[name]
        assert d["work_pool_name"] == "gpu", name
        assert parse_config(d["parameters"]["config"]) == parse_config(production), name
        schema = d["parameter_openapi_schema"]
        config = schema["properties"]["config"]
        refs = [config.get("$ref")] + [option.get("$ref") for option in config.get("anyOf", [])]
        assert "#/definitions/RunConfig" in refs, (name, config)
        run_config = schema["definitions"]["RunConfig"]["properties"]
        assert {"models", "lake", "prompts", "preferences", "dialogues", "quality"} <= set(run_config), name
        stages = schema["definitions"]
        assert {"responses_per_prompt", "generators", "judges"} <= set(stages["PreferencesStage"]["properties"])
        assert {"rounds", "assistant", "user"} <= set(stages["DialoguesStage"]["properties"])
        assert "tensor_parallel_size" in stages["ModelSpec"]["properties"]
    for stage in ("prompts", "preferences", "dialogues"):
        assert deployments[f"{stage}/stage"]["entrypoint"] == f"flows/{stage}.py:{stage}_flow"
        assert not deployments[f"{stage}/stage"]["schedules"]

    backfill = deployments["backfill/backfill"]["parameter_openapi_schema"]
    assert backfill["required"] == ["start_date", "end_date"]  # asked for at each run
    assert backfill["properties"]["start_date"]["format"] == "date"
    assert not deployments["backfill/backfill"]["schedules"]

    quickstart = deployments["nightly/quickstart"]
    assert quickstart["work_pool_name"] == "local"
    assert quickstart["parameters"] == {"config_file": "deployments/examples/small.yaml"}


# --- a night run by a worker ---------------------------------------------------------------------

def flow_run_id(out: str) -> str:
    found = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert found, out
    return found.group(1)


def small_config(lake: Path, base_url: str) -> dict:
    """Prompts only, a handful of rows from the fake server: the point is the path through Prefect."""
    return {
        "name": "deployed", "lake": {"root": str(lake)},
        "models": {"fake": {"backend": "openai", "base_url": base_url, "model": "fake"}},
        "prompts": {"generator": "fake", "topics": {"macro_topics": 1, "subtopics_per_topic": 2},
                    "writing": {"enabled": False}, "math": {"enabled": False},
                    "instruction_following": {"count": 2}, "two_turn": {"count": 0}},
    }


def prompts_per_date(config: dict) -> dict[str, dict[str, int]]:
    rows = Catalog(parse_config(config).lake).query(
        "SELECT run_date::VARCHAR AS d, task_type, count(*) AS n FROM prompts GROUP BY ALL").to_pylist()
    found: dict[str, dict[str, int]] = {}
    for r in rows:
        found.setdefault(r["d"], {})[r["task_type"]] = r["n"]
    return found


@pytest.fixture(scope="module")
def night(deployed, tmp_path_factory):
    """The nightly deployment run once by a process worker: (env, flow run id, the run's config)."""
    env, _, _ = deployed
    env = {**env, "SDG_HOME": str(REPO)}  # the deployments' pull step cds there
    with FakeOpenAIServer(latency_s=0.01, answer=varied_lists(items=3, seed=5)) as llm:
        small = small_config(tmp_path_factory.mktemp("night") / "lake", llm.base_url)
        out = prefect(env, "deployment", "run", "nightly/nightly", "--params",
                      json.dumps({"config": small, "run_date": "2026-11-21"}))
        run_id = flow_run_id(out)
        prefect(env, "worker", "start", "--pool", "gpu", "--run-once", timeout=600)
    return env, run_id, small


def test_nightly_deployment_runs_on_a_process_worker(night):
    env, run_id, small = night
    run = api(env, "GET", f"/flow_runs/{run_id}")
    assert run["state"]["type"] == "COMPLETED", run["state"]
    children = api(env, "POST", "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}})
    assert [c["state"]["type"] for c in children] == ["COMPLETED"], children  # the prompts stage, as a subflow
    assert api(env, "GET", f"/flows/{children[0]['flow_id']}")["name"] == "prompts"

    # The artifacts of the night, read back through the API: on the nightly run and its stage.
    ids = [run_id] + [c["id"] for c in children]
    artifacts = api(env, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": ids}}})
    on_night = [a for a in artifacts if a["flow_run_id"] == run_id]
    on_stage = [a for a in artifacts if a["flow_run_id"] != run_id]
    assert on_night and on_stage, [(a["key"], a["flow_run_id"]) for a in artifacts]
    for artifact in artifacts:
        read = api(env, "GET", f"/artifacts/{artifact['id']}")
        assert read["data"] and read["type"] in ("markdown", "table", "progress"), read
    assert any(a["type"] == "markdown" for a in on_night)
    progress = [api(env, "GET", f"/artifacts/{a['id']}") for a in on_stage if a["type"] == "progress"]
    assert [p["data"] for p in progress] == [100.0]  # the prompts stage's batches, all done

    assert prompts_per_date(small) == {"2026-11-21": {"open_qa": 4, "coding": 4, "instruction_following": 2}}


# --- the same night in the Prefect UI, as a person sees it ---------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 # the network is closed: without these Chromium stalls on refused background connections
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path("/tmp/sdg-ui")  # a stable copy of the screenshots, to look at after the run


def test_the_prefect_ui_shows_the_night_and_its_row_counts(night, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="no playwright: pip install -e '.[dev]' (it pins playwright)")
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium: apt-get install -y chromium (Debian's package; .ci/run installs it)")
    env, run_id, small = night
    base = env["PREFECT_API_URL"].removesuffix("/api")
    run = api(env, "GET", f"/flow_runs/{run_id}")
    [summary] = [a for a in api(env, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
                 if a["key"] == "deployed-night"]
    # The counts the page must show: published rows per dataset, read from the lake's own views.
    counts = {r["dataset"]: r["rows"] for r in Catalog(parse_config(small).lake).dataset_counts().to_pylist()
              if r["run_date"] == "2026-11-21"}
    assert counts.get("prompts") == 10, counts

    # V1 at the URL `prefect deployment run` prints; V2, where `/` sends a browser by default.
    pages = [(f"{ui}-{what}", f"{base}{prefix}{path}") for ui, prefix in (("v1", ""), ("v2", "/v2"))
             for what, path in (("flow-run", f"/runs/flow-run/{run_id}"),
                                ("artifact", f"/artifacts/artifact/{summary['id']}"))]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        # Loopback only: V2 calls an analytics host, which would only fail slowly here.
        context.route(lambda url: not url.startswith(base + "/"), lambda route: route.abort())
        page = context.new_page()
        for name, url in pages:
            page.goto(url)
            try:
                if name.endswith("flow-run"):
                    page.get_by_text(run["name"], exact=True).first.wait_for()
                    page.get_by_text("Completed", exact=True).first.wait_for()  # the state badge
                    page.get_by_text("Finished in state Completed()").first.wait_for()  # its logs, loaded
                    page.locator("canvas").first.wait_for()  # the run graph: drawn, not DOM, so give it a
                    page.wait_for_timeout(2000)  # moment (for the screenshot only)
                else:
                    page.get_by_text("Night 2026-11-21 of").first.wait_for()
                    page.locator("tr", has_text="published rows").first.wait_for()
                    cells = ([td.inner_text().strip() for td in tr.locator("td").all()]
                             for tr in page.locator("tr").all())
                    rows = {row[0]: row[1:] for row in cells if row}  # the header row has no td
                    for dataset, n in counts.items():
                        assert rows.get(dataset, [None])[0] == str(n), (name, dataset, n, rows)
                    assert rows["prompts"][1:] == ["3 of 3 published", "100%"], (name, rows)
                page.wait_for_load_state("networkidle")
            finally:  # kept whether the page passed or not: it shows what was there
                shot = tmp_path / f"{name}.png"
                page.screenshot(path=shot, full_page=True)
                shutil.copy(shot, SCREENSHOTS / shot.name)
                print(f"screenshot of {url}: {shot} (copy: {SCREENSHOTS / shot.name})")
        browser.close()


def test_backfill_deployment_runs_one_night_per_date_in_order(tmp_path, deployed):
    env, _, _ = deployed
    env = {**env, "SDG_HOME": str(REPO)}
    with FakeOpenAIServer(latency_s=0.01, answer=varied_lists(items=3, seed=6)) as llm:
        small = small_config(tmp_path / "lake", llm.base_url)
        config_file = tmp_path / "small.yaml"  # by file this time: the deployment's inline config set to null
        config_file.write_text(yaml.safe_dump(small))
        out = prefect(env, "deployment", "run", "backfill/backfill", "-p", "config=null",
                      "-p", f"config_file={config_file}", "-p", "start_date=2026-11-19", "-p", "end_date=2026-11-20")
        run_id = flow_run_id(out)
        prefect(env, "worker", "start", "--pool", "gpu", "--run-once", timeout=600)

    run = api(env, "GET", f"/flow_runs/{run_id}")
    assert run["state"]["type"] == "COMPLETED", run["state"]
    nights = api(env, "POST", "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}},
                                                    "sort": "START_TIME_ASC"})
    assert [(n["name"], n["state"]["type"]) for n in nights] == [
        ("nightly-2026-11-19", "COMPLETED"), ("nightly-2026-11-20", "COMPLETED")]
    per_night = {"open_qa": 4, "coding": 4, "instruction_following": 2}
    assert prompts_per_date(small) == {"2026-11-19": per_night, "2026-11-20": per_night}

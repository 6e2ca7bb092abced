"""The dashboard in a real browser (Playwright driving Debian's Chromium) against a real server with real data:
a deployed model that has served requests, and a running task. Screenshots of every page go to
test-artifacts/screenshots/."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.support import Server, build_sklearn_classifier, create_pipeline, deploy, upload_model, wait_status
from tests.test_jobs import ready_orchestration, wait_task

CHROMIUM = os.environ.get("MODELPORT_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"no Chromium at {CHROMIUM} (make test installs Debian's chromium)")


@pytest.fixture(scope="module")
def data(server: Server, model_dir: Path) -> dict:
    workspace = server.post("/v1/api/workspaces/create", {"workspace_name": "dash"}).json()["workspace_id"]
    model = upload_model(server, workspace, "iris", build_sklearn_classifier(model_dir / "dash-iris.joblib"), "sklearn")
    pipeline = create_pipeline(server, workspace, "dash-pipeline", [model])
    deployment_id = deploy(server, "dash-pipeline", pipeline)
    name = f"dash-pipeline-{deployment_id}"
    wait_status(server, name)
    url = f"{server.url}/v1/api/pipelines/infer/{name}/dash-pipeline"
    for _ in range(20):
        reply = httpx.post(url, json=[{"inputs": [5.1, 3.5, 1.4, 0.2]}],
                           headers={**server.headers, "Content-Type": "application/json; format=pandas-records"})
        assert reply.status_code == 200, reply.text
    orchestration = ready_orchestration(server, workspace, {
        "main.py": b"import time\nprint('working', flush=True)\ntime.sleep(600)\n"})
    task_id = server.post("/v1/api/task/run_once", {"workspace_id": workspace, "orch_id": orchestration["id"],
                                                    "name": "long-job", "json": {}}).json()["id"]
    wait_task(server, task_id, ("started",))
    return {"deployment": f"wallaroo:{deployment_id}", "task": task_id}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


def test_pages_deploy_state_undeploy_and_kill(server: Server, data: dict, browser) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1366, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    page.goto(f"{server.url}/ui/deployments")
    assert page.url.endswith("/ui/login")
    page.fill("#token", "wrong-token")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text()
    page.fill("#token", server.token)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui")
    cookie = next(c for c in page.context.cookies() if c["name"] == "modelport_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    for name in ("deployments", "workspaces", "models", "pipelines", "jobs"):
        page.goto(f"{server.url}/ui/{name}")
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").inner_text()
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.goto(f"{server.url}/ui/models")
    assert "iris" in page.content() and "sklearn" in page.content() and "ready" in page.content()

    # a deployment: state, replicas, a live chart, inference logs; then undeploy through the button
    page.goto(f"{server.url}/ui/deployments/{data['deployment']}")
    status = page.get_by_test_id("deployment-status")
    assert status.inner_text() == "Running"
    assert page.locator("polyline").count() == 0
    page.wait_for_selector(".chart .latest:has-text('req/s')", timeout=10_000)
    assert page.locator("text=engine-").count() >= 1
    assert "inputs" in page.locator("section.card").last.inner_text()
    page.screenshot(path=str(SHOTS / "deployment.png"), full_page=True)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Undeploy')")
    page.wait_for_url(f"**/ui/deployments/{data['deployment']}")
    assert page.get_by_test_id("deployment-status").inner_text() == "Stopped"
    infer = httpx.post(f"{server.url}/v1/api/pipelines/infer/dash-pipeline-{data['deployment'].split(':')[1]}/"
                       "dash-pipeline", json=[{"inputs": [5.1, 3.5, 1.4, 0.2]}], headers=server.headers)
    assert infer.status_code >= 400  # really undeployed
    page.screenshot(path=str(SHOTS / "deployment-undeployed.png"), full_page=True)

    # a running task: its live log tail, then kill from its page
    page.goto(f"{server.url}/ui/tasks/{data['task']}")
    assert page.get_by_test_id("task-status").inner_text() == "started"
    page.click("table a")
    page.wait_for_selector("pre.log:has-text('working')", timeout=10_000)
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)
    page.go_back()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Kill')")
    page.wait_for_url(f"**/ui/tasks/{data['task']}")
    assert page.get_by_test_id("task-status").inner_text() == "killed"
    assert "killed" in page.content()
    page.screenshot(path=str(SHOTS / "task-killed.png"), full_page=True)

    page.keyboard.press("Tab")  # keyboard reachable: the skip link comes first
    assert page.evaluate("document.activeElement.className") == "skip"
    assert not problems, problems


def test_no_page_without_a_session_and_no_action_without_csrf(server: Server, data: dict) -> None:
    for path in ("/ui", "/ui/models", "/ui/jobs", f"/ui/deployments/{data['deployment']}", f"/ui/tasks/{data['task']}"):
        reply = httpx.get(server.url + path, headers=server.headers)  # a bearer token is not a session
        assert reply.status_code == 303 and reply.headers["location"] == "/ui/login", path
    assert httpx.get(f"{server.url}/ui/deployments/{data['deployment']}/metrics.json").status_code == 401
    assert httpx.get(f"{server.url}/ui/static/app.js").status_code == 401
    forged = httpx.get(f"{server.url}/ui", cookies={"modelport_session": "x.9999999999.deadbeef"})
    assert forged.status_code == 303

    with httpx.Client(base_url=server.url) as session:
        assert session.post("/ui/login", data={"token": server.token}).status_code == 303
        assert session.get("/ui/models").status_code == 200
        for action in (f"/ui/deployments/{data['deployment']}/redeploy", f"/ui/tasks/{data['task']}/kill",
                       "/ui/logout"):
            assert session.post(action).status_code == 403, action
            assert session.post(action, data={"csrf": "forged"}).status_code == 403, action
        page = session.get(f"/ui/deployments/{data['deployment']}").text
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        redeployed = session.post(f"/ui/deployments/{data['deployment']}/redeploy", data={"csrf": csrf})
        assert redeployed.status_code == 303
    deadline = time.monotonic() + 60
    name = "dash-pipeline-" + data["deployment"].split(":")[1]
    while server.post("/v1/api/status/get_deployment", {"name": name}).json()["status"] != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert json.loads(json.dumps(server.post("/v1/api/status/get_deployment", {"name": name}).json()))

"""The Workflow page as a sysadmin uses it (issues 3 and 7): headless Chromium with JavaScript
turned off, against a real `workflow-authz serve` (two worker processes) on a store of its own. Log
in, untick and tick boxes (reopen ones too), change the responsible role, review, save -- and POST
/authorize answers differently on the very next request, whichever process takes it. A second
browser session saving a form it loaded before that save is refused. The page also fits a phone's
width.

The set-up makes the README's screenshot, docs/admin-workflow.png, when it is missing or when
UPDATE_SCREENSHOTS=1 (otherwise it goes to the test's temporary folder only, so a test run does
not rewrite the committed image)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CLI = Path(sys.executable).parent / "workflow-authz"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "admin-workflow.png"
PASSWORD = "correct horse battery staple"
REOPEN = "Staff who may reopen (move back to the previous phase)"
STARTUP_SECONDS = 30

if not CHROMIUM.exists():
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(f"CI=true but {CHROMIUM} is missing: apt-get install -y chromium")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


# -- the server: init, an admin, a key, then `serve` until the module is done ----------------------


@dataclass(frozen=True)
class Server:
    """A running service, an API key for tenant `default` and the CLI's environment."""

    url: str
    key: str
    env: dict[str, str]

    def authorize(self, role: str, area: str, phase: str, action: str = "view") -> bool:
        """Ask POST /authorize, as an app would, whether `role` may `action` there."""
        body = json.dumps({"role": role, "action": action, "area": area, "phase": phase})
        request = Request(
            f"{self.url}/authorize",
            data=body.encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        with urlopen(request, timeout=10) as answer:
            allowed: bool = json.load(answer)["allowed"]
            return allowed


def cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [str(CLI), *args], env=env, input=stdin, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /healthz until it answers 200; fail at once if the server exits."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            with urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except HTTPError as error:
            error.close()
        except (URLError, ConnectionError):
            pass
        try:  # waits on the process, not a clock: returns early if it died
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"the server exited:\n{log.read_text()}")
    raise RuntimeError(f"the server was not healthy within {STARTUP_SECONDS}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("served")
    env = os.environ | {"WORKFLOW_AUTHZ_DATABASE_URL": f"sqlite:///{folder / 'store.sqlite3'}"}
    cli(env, "init")
    for username in ("sysadmin", "deputy"):
        cli(env, "admins", "create", "--tenant", "*", "--username", username, stdin=PASSWORD)
    key = cli(env, "keys", "create", "--tenant", "default", "--name", "browser").split()[-1]
    url = f"http://127.0.0.1:{free_port()}"
    log = folder / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(CLI), "serve", "--workers", "2", "--port", url.rsplit(":", 1)[1]],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(url, process, log)
        yield Server(url, key, env)
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(browser: Browser, server: Server, width: int = 1100, height: int = 900) -> Page:
    """A page in a fresh browser session (its own cookies), with JavaScript turned off."""
    context = browser.new_context(
        base_url=server.url, java_script_enabled=False, viewport={"width": width, "height": height}
    )
    return context.new_page()


def log_in(page: Page, username: str) -> None:
    page.goto("/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/workflow/behaviour\?tenant=default$"))


def phase(page: Page, label: str) -> Locator:
    """The fieldset of one phase (a group named by its legend)."""
    return page.get_by_role("group", name=label, exact=True)


def reopen_box(page: Page, phase_label: str, role: str) -> Locator:
    """The checkbox saying that `role` may reopen the phase (move it back one phase)."""
    group = phase(page, phase_label).get_by_role("group", name=REOPEN, exact=True)
    return group.get_by_label(role, exact=True)


# -- tests ---------------------------------------------------------------------------------------


def test_a_sysadmin_changes_who_sees_what_and_authorize_follows(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    assert not server.authorize("parent", "behaviour", "organisation_approval")
    assert server.authorize("external_system", "behaviour", "completed")
    assert server.authorize("mentor", "behaviour", "group_registration", "advance")
    assert server.authorize("headteacher", "behaviour", "completed", "reopen")
    assert not server.authorize("mentor", "behaviour", "organisation_approval", "reopen")
    page = new_page(browser, server)
    log_in(page, "sysadmin")
    expect(page.get_by_text("policy version 1")).to_be_visible()
    first = phase(page, "Group registration phase")
    expect(first.get_by_role("group", name=REOPEN, exact=True)).to_have_count(0)
    expect(first.get_by_text("There is no earlier phase to go back to.")).to_be_visible()
    shot = tmp_path / "admin-workflow.png"
    page.screenshot(path=shot, full_page=True)
    if not SCREENSHOT.exists() or os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)

    phase(page, "Organisation approval phase").get_by_label("Parent", exact=True).check()
    completed = phase(page, "Term behaviour assessment completed")
    completed.get_by_label("External systems", exact=True).uncheck()
    registration = phase(page, "Group registration phase")
    registration.get_by_label("Responsible for advancing").select_option(label="Headteacher")
    reopen_box(page, "Organisation approval phase", "Mentor").check()
    reopen_box(page, "Term behaviour assessment completed", "Headteacher").uncheck()
    page.get_by_role("button", name="Review changes").click()

    changes = page.get_by_role("list").filter(has_text="will")
    expect(changes.get_by_role("listitem")).to_have_text(
        [
            "Mentors will no longer be responsible for advancing Behaviour "
            "from the Group registration phase",
            "Headteachers will be responsible for advancing Behaviour "
            "from the Group registration phase",
            "Parents will be able to see Behaviour in the Organisation approval phase",
            "Mentors will be able to reopen Behaviour from the Organisation approval phase "
            "(back to the Group registration phase)",
            "External systems will no longer be able to see Behaviour "
            "in the phase “Term behaviour assessment completed”",
            "Headteachers will no longer be able to reopen Behaviour from the phase "
            "“Term behaviour assessment completed” (back to the Organisation approval phase)",
        ]
    )
    assert not server.authorize("parent", "behaviour", "organisation_approval"), "not yet saved"
    page.get_by_role("button", name="Save these changes").click()

    expect(page.get_by_role("status")).to_have_text("Saved 6 changes: the policy is now version 2.")
    assert server.authorize("parent", "behaviour", "organisation_approval")
    assert not server.authorize("external_system", "behaviour", "completed")
    assert server.authorize("headteacher", "behaviour", "group_registration", "advance")
    assert not server.authorize("mentor", "behaviour", "group_registration", "advance")
    assert server.authorize("mentor", "behaviour", "organisation_approval", "reopen")
    assert not server.authorize("headteacher", "behaviour", "completed", "reopen")
    expect(reopen_box(page, "Organisation approval phase", "Mentor")).to_be_checked()
    page.context.close()


def test_a_second_session_saving_a_stale_form_is_refused(browser: Browser, server: Server) -> None:
    first, second = new_page(browser, server), new_page(browser, server)
    log_in(first, "sysadmin")
    log_in(second, "deputy")
    for page in (first, second):
        page.get_by_role("link", name="Assessment", exact=True).click()
    phase(second, "Course registration phase").get_by_label("Learner", exact=True).check()
    second.get_by_role("button", name="Review changes").click()

    phase(first, "Organisation approval phase").get_by_label("Parent", exact=True).check()
    first.get_by_role("button", name="Review changes").click()
    first.get_by_role("button", name="Save these changes").click()
    expect(first.get_by_role("status")).to_contain_text("Saved 1 change")

    second.get_by_role("button", name="Save these changes").click()
    alert = second.get_by_role("alert")
    expect(alert).to_contain_text("Not saved: the policy changed while you were editing")
    expect(alert).to_contain_text("sysadmin saved version")
    expect(alert).to_contain_text(
        "Learners will be able to see Assessment in the Course registration phase"
    )
    assert server.authorize("parent", "assessment", "organisation_approval")
    assert not server.authorize("learner", "assessment", "course_registration")
    for page in (first, second):
        page.context.close()


def test_the_page_fits_a_phone_and_works_from_the_keyboard(
    browser: Browser, server: Server
) -> None:
    page = new_page(browser, server, width=360, height=740)
    log_in(page, "sysadmin")
    for element in (
        page.locator("fieldset.phase").first,
        page.get_by_role("button", name="Review changes"),
    ):
        box = element.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    learner = phase(page, "Group registration phase").get_by_label("Learner", exact=True)
    learner.focus()
    page.keyboard.press("Space")
    expect(learner).to_be_checked()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(
        phase(page, "Group registration phase").get_by_label("Responsible for advancing")
    ).to_be_focused()
    page.context.close()


# The stale-form tests come last: they leave ticks (Learner in the Group registration phase) that
# the tests above expect unticked, as every test here runs on the module's one server in order.


def reviewed_then_stale(browser: Browser, server: Server) -> tuple[Page, Page]:
    """Two admins' sessions on the Behaviour page, both loaded at the same version."""
    first, second = new_page(browser, server), new_page(browser, server)
    log_in(first, "sysadmin")
    log_in(second, "deputy")
    return first, second


def loose(pattern: str) -> re.Pattern[str]:
    """A whole-text pattern whose spaces match any run of whitespace (the HTML's line breaks)."""
    return re.compile("^" + pattern.replace(" ", r"\s+") + "$")


def save(page: Page) -> None:
    page.get_by_role("button", name="Review changes").click()
    page.get_by_role("button", name="Save these changes").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")


def test_a_stale_form_lists_only_its_own_change_and_applies_it_on_top_of_theirs(
    browser: Browser, server: Server
) -> None:
    assert not server.authorize("learner", "behaviour", "group_registration")
    assert not server.authorize("external_system", "behaviour", "group_registration")
    first, second = reviewed_then_stale(browser, server)
    phase(second, "Group registration phase").get_by_label("External systems", exact=True).check()
    second.get_by_role("button", name="Review changes").click()
    phase(first, "Group registration phase").get_by_label("Learner", exact=True).check()
    save(first)

    second.get_by_role("button", name="Save these changes").click()
    alert = second.get_by_role("alert")
    expect(alert).to_contain_text("Not saved: the policy changed while you were editing")
    expect(alert).not_to_contain_text("no longer")  # nothing of theirs offered for undoing
    expect(alert.locator("#yours li")).to_have_text(
        ["External systems will be able to see Behaviour in the Group registration phase"]
    )
    expect(alert.locator("#theirs li")).to_have_text(
        [
            loose(
                r"sysadmin, version \d+ on \S+ \S+ UTC: Learners were allowed to see Behaviour "
                r"in the Group registration phase"
            )
        ]
    )
    expect(alert.locator("#conflicts")).to_have_count(0)
    second.get_by_role("button", name=re.compile("^Review my changes on top of version")).click()
    expect(second.locator("#changes li")).to_have_text(
        ["External systems will be able to see Behaviour in the Group registration phase"]
    )
    second.get_by_role("button", name="Save these changes").click()
    expect(second.get_by_role("status")).to_contain_text("Saved 1 change")
    registration = phase(second, "Group registration phase")
    expect(registration.get_by_label("Learner", exact=True)).to_be_checked()
    expect(registration.get_by_label("External systems", exact=True)).to_be_checked()
    assert server.authorize("learner", "behaviour", "group_registration"), "theirs is kept"
    assert server.authorize("external_system", "behaviour", "group_registration")
    for page in (first, second):
        page.context.close()


def test_a_stale_form_that_touches_the_same_cells_says_where_the_two_meet(
    browser: Browser, server: Server
) -> None:
    first, second = reviewed_then_stale(browser, server)
    for page, role in ((first, "Mentor"), (second, "Course teacher")):
        phase(page, "Group registration phase").get_by_label("Parent", exact=True).check()
        approval = phase(page, "Organisation approval phase")
        approval.get_by_label("Responsible for advancing").select_option(label=role)
    save(first)

    second.get_by_role("button", name="Review changes").click()
    conflicts = second.get_by_role("alert").locator("#conflicts li")
    expect(conflicts).to_have_text(
        [
            loose(
                r"Already in force: Parents will be able to see Behaviour in the Group "
                r"registration phase\. sysadmin made the same change in version \d+\."
            ),
            loose(
                r"Already in force: Headteachers will no longer be responsible for advancing "
                r"Behaviour from the Organisation approval phase\. sysadmin made the same change "
                r"in version \d+\."
            ),
            loose(
                r"Conflict: Course teachers will be responsible for advancing Behaviour from "
                r"the Organisation approval phase, but sysadmin changed it meanwhile, in version "
                r"\d+: Mentors were made responsible for advancing Behaviour from the "
                r"Organisation approval phase\. Applying yours reverses that\."
            ),
        ]
    )
    assert server.authorize("mentor", "behaviour", "organisation_approval", "advance")
    second.get_by_role("button", name=re.compile("^Review my changes on top of version")).click()
    expect(second.locator("#changes li")).to_have_text(
        [
            "Mentors will no longer be responsible for advancing Behaviour from the "
            "Organisation approval phase",
            "Course teachers will be able to see Behaviour in the Organisation approval phase",
            "Course teachers will be responsible for advancing Behaviour from the "
            "Organisation approval phase",
        ]
    )
    second.get_by_role("button", name="Save these changes").click()
    expect(second.get_by_role("status")).to_contain_text("Saved 3 changes")
    assert server.authorize("course_teacher", "behaviour", "organisation_approval", "advance")
    assert not server.authorize("mentor", "behaviour", "organisation_approval", "advance")
    assert server.authorize("parent", "behaviour", "group_registration"), "kept, once"
    for page in (first, second):
        page.context.close()


def test_the_external_systems_tab_lists_the_tenants_endpoints(
    browser: Browser, server: Server
) -> None:
    private = server.env | {"WORKFLOW_AUTHZ_WEBHOOK_ALLOW_PRIVATE": "true"}
    added = cli(
        private,
        "webhooks",
        "add",
        "--tenant",
        "default",
        "--name",
        "Gradebook",
        "--url",
        "http://127.0.0.1:9/gradebook",
    )
    secret = added.split()[-1]
    assert secret.startswith("whsec_")
    page = new_page(browser, server, width=360, height=740)
    log_in(page, "sysadmin")
    page.get_by_role("link", name="External systems", exact=True).click()
    expect(page).to_have_url(re.compile(r"/admin/external-systems\?tenant=default$"))
    row = page.get_by_role("row").filter(has_text="Gradebook")
    expect(row).to_contain_text("http://127.0.0.1:9/gradebook")
    expect(row.get_by_role("cell").nth(3)).to_contain_text("active")
    assert secret not in page.content()
    table = page.locator(".scroll").bounding_box()
    assert table is not None and table["x"] + table["width"] <= 360, "scrolls inside a phone"
    page.context.close()

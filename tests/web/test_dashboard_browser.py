"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright), as a
person would use it while a study runs: the studies page, a study page whose trial count and
best value change, a sorted table that stays sorted, a zoom that survives updates, a trial's
page, and screenshots (wide and phone-sized) saved under the test's tmp dir."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aio_ashb as aa
from aio_ashb.web import Dashboard
from tests.helpers import SPACE
from tests.web.test_dashboard import run_study

CHROMIUM = shutil.which("chromium")
BLANK = "\u2013"  # what the pages show for no value yet (an en dash)
try:
    from playwright.sync_api import Page, expect, sync_playwright

    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - CI installs it (the test extra)
    HAVE_PLAYWRIGHT = False

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs the system browser: apt-get install -y chromium"),
    pytest.mark.skipif(not HAVE_PLAYWRIGHT, reason='needs Playwright: pip install -e ".[test]"'),
    pytest.mark.timeout(150),
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A dashboard of a fresh study file on a real uvicorn server (in a thread)."""
    import uvicorn

    db = tmp_path / "run.db"

    async def create() -> None:
        study = await aa.create_study(
            space=SPACE,
            scheduler=aa.ASHA(1, 9, 3),
            sampler=aa.RandomSampler(1),
            storage=f"sqlite:///{db}",
            name="s",
        )
        await study.close()

    asyncio.run(create())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(Dashboard(db).app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", db
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _numbers(page: Page, column: int) -> list[float]:
    cells: list[str] = page.eval_on_selector_all(
        f"#trials tbody tr td:nth-child({column})", "tds => tds.map(td => td.textContent)"
    )
    return [float(c) for c in cells if c != BLANK]


def test_watching_a_running_study(served: tuple[str, Path], tmp_path: Path) -> None:
    url, db = served
    go = threading.Event()
    writer = threading.Thread(
        target=lambda: (
            go.wait(30),
            asyncio.run(run_study(db, "s", trials=1000, step_time=0.05, run_for=25)),
        ),
        daemon=True,
    )
    writer.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            # Before the run: the studies page, and (from its link) the study page in a second tab.
            page.goto(url + "/")
            row = page.locator("#studies tbody tr", has_text="s")
            expect(row.locator("td.trials")).to_have_text("0", timeout=5000)
            study = browser.new_page(viewport={"width": 1400, "height": 1000})
            study.on("pageerror", lambda e: errors.append(str(e)))
            study.goto(url + (row.locator("a").get_attribute("href") or ""))
            count, best = study.locator("#trial-count"), study.locator("#best-value")
            expect(count).to_have_text("0", timeout=5000)
            expect(best).to_have_text(BLANK)

            # The run starts: both pages see the trials come, the study page the best value.
            go.set()
            expect(row.locator("td.trials")).not_to_have_text("0", timeout=5000)
            page.screenshot(path=tmp_path / "studies.png")
            page.close()
            page = study
            expect(count).not_to_have_text("0", timeout=3000)
            expect(best).not_to_have_text(BLANK, timeout=5000)
            seen = count.text_content() or ""
            expect(count).not_to_have_text(seen, timeout=3000)
            assert float(best.text_content() or "nan") > 0

            # A zoom survives updates (Plotly.react with a fixed uirevision).
            page.evaluate("Plotly.relayout('chart-best', {'xaxis.range': [0, 1]})")
            reports = page.locator("#reports").text_content()
            expect(page.locator("#reports")).not_to_have_text(
                reports or "", timeout=2000
            )  # a new report < 2 s
            page.wait_for_timeout(1200)
            assert page.evaluate("document.getElementById('chart-best').layout.xaxis.range") == [0, 1]

            # Sort by value (the 5th column): it stays sorted as updates arrive.
            button = page.locator('#trials th button[data-key="value"]')
            button.click()
            header = page.locator('#trials th:has(button[data-key="value"])')
            expect(header).to_have_attribute("aria-sort", "ascending")
            values = _numbers(page, 5)
            assert values == sorted(values) and values
            button.press("Enter")  # by keyboard too
            expect(header).to_have_attribute("aria-sort", "descending")
            # Rows are kept and updated in place: a node marked now is still there after updates.
            page.evaluate("document.querySelector('#trials tbody tr').dataset.kept = 'yes'")
            seen = page.locator("#reports").text_content() or ""
            expect(page.locator("#reports")).not_to_have_text(seen, timeout=3000)
            page.wait_for_timeout(300)
            values = _numbers(page, 5)
            assert values == sorted(values, reverse=True)
            assert page.locator('#trials tbody tr[data-kept="yes"]').count() == 1
            expect(header).to_have_attribute("aria-sort", "descending")

            # Filter by state, then search the parameters (the server filters: wait for its page).
            page.select_option("#filter-state", "running")
            page.wait_for_function(
                "[...document.querySelectorAll('#trials tbody tr td:nth-child(2)')]"
                ".every(td => td.textContent === 'running')",
                timeout=5000,
            )
            page.select_option("#filter-state", "")
            page.fill("#filter-search", "c=a")
            column = 1 + page.eval_on_selector_all(
                "#trials th button", "bs => bs.findIndex(b => b.dataset.key === 'params.c')"
            )
            page.wait_for_function(
                "(() => { const cs = [...document.querySelectorAll("
                f"'#trials tbody tr td:nth-child({column})')];"
                " return cs.length > 0 && cs.every(td => td.textContent === 'a'); })()",
                timeout=5000,
            )
            shown = page.locator("#shown").text_content() or ""
            assert "trials" in shown

            page.fill("#filter-search", "")
            page.evaluate("Plotly.relayout('chart-best', {'xaxis.autorange': true}); window.scrollTo(0, 0)")
            page.wait_for_timeout(1500)
            page.screenshot(path=tmp_path / "study.png")  # the charts and the table's first rows

            # A trial's page: its parameters, state and curve.
            page.locator("#trials tbody tr a").first.click()
            page.wait_for_url("**/studies/s/trials/*")
            expect(page.locator("#state")).not_to_have_text(BLANK, timeout=5000)
            expect(page.locator("#params tbody tr")).to_have_count(len(SPACE))
            page.wait_for_function("document.getElementById('chart-curve').data !== undefined")
            page.screenshot(path=tmp_path / "trial.png", full_page=True)

            # Phone-sized: the study page still lays out in one column, no horizontal page scroll.
            phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
            phone.goto(url + "/studies/s")
            expect(phone.locator("#trial-count")).not_to_have_text(BLANK, timeout=5000)
            phone.wait_for_timeout(1500)
            width: Any = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390
            phone.screenshot(path=tmp_path / "study-phone.png")
            browser.close()
            assert not errors, errors
    finally:
        go.set()
        writer.join(60)
    for name in ["studies.png", "study.png", "trial.png", "study-phone.png"]:
        assert (tmp_path / name).stat().st_size > 10_000, name


def test_numbers_are_shown_to_six_significant_digits(served: tuple[str, Path]) -> None:
    """The pages' one number format: trailing zeros of a fraction go, an integer part's and an
    exponent's stay (100000.3 was once shown as "1")."""
    url, _db = served
    shown = {
        100000.3: "100000",
        -120000.25: "-120000",
        99999.99999: "100000",
        123456.7: "123457",
        10.00001: "10",
        0.1: "0.1",
        0.000123456789: "0.000123457",
        1.5e-7: "1.5e-7",
        1.0000000000001e-7: "1e-7",
        1234567.5: "1.23457e+6",
        2.5e21: "2.5e+21",
        42.0: "42",
    }
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url + "/")
        got = page.evaluate("vs => vs.map(fmt)", list(shown))
        browser.close()
    assert dict(zip(shown, got, strict=True)) == shown

"""studio.py: the page's functions, its server through Gradio's client, and the page itself in a
headless browser (Debian's Chromium and its driver; skipped, naming the install, without)."""

import concurrent.futures
import io
import os
import shutil
import socket
import time
import urllib.request

import numpy as np
import pytest
import soundfile

import studio
from conftest import command, tone, write_audio
from util import UserError

INSTALL = "apt-get install chromium chromium-driver; pip install -r requirements.txt (selenium)"


def settings(model_dir, **changes):
    """One take's settings as the page sends them: 0.5 s from noise, `fast`, seed 3."""
    return {"model_dir": str(model_dir), "mode": "generate", "seconds": 0.5, "sampler": "fast",
            "steps": 0, "seed": 3, "label": studio.NO_LABEL, "guidance": 1.0, "upload": None,
            "strength": 0.5, "inpaint_start": 0.0, "inpaint_end": 1.0, **changes}


def test_the_page_offers_every_model_dir_once(tmp_path, monkeypatch):
    for folder in ("pretrained/a", "runs/x/y", "runs/c/sketch", "runs/deep/a/b/c"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "params.json").write_text("{}")
    (tmp_path / "runs/c/cascade.json").write_text('{"stages": ["sketch"]}')
    monkeypatch.chdir(tmp_path)
    assert studio.find_models(["pretrained", "runs"]) == ["pretrained/a", "runs/c", "runs/x/y"]


@pytest.mark.parametrize("model, changes, name", [
    ("model_dir", {}, "fast_seed3_000.wav"),
    ("labelled_model_dir", {"label": "high", "guidance": 2.0, "sampler": "ddim", "steps": 4},
     "high_ddim_seed3_000.wav"),
])
def test_a_take_is_the_file_generate_py_writes_with_the_same_settings(request, tmp_path, model,
                                                                      changes, name):
    model_dir = request.getfixturevalue(model)
    assert studio.label_names(str(model_dir)) == (("high", "low") if changes else ())
    path = studio.Studio(tmp_path / "work").take(settings(model_dir, **changes))
    assert path.startswith(str(tmp_path / "work"))
    argv = studio.generate_argv(**settings(model_dir, **changes), output_dir=tmp_path / "cli")
    result = command("generate.py", *argv)
    assert result.returncode == 0, result.stderr
    with open(path, "rb") as take, open(tmp_path / "cli" / name, "rb") as cli:
        assert take.read() == cli.read()


def test_variation_continuation_and_inpainting_takes(model_dir, tmp_path):
    clip = tmp_path / "clip.wav"
    write_audio(clip, tone(1.0, 22050), 22050)
    takes = studio.Studio(tmp_path / "work")
    lengths = {mode: len(soundfile.read(takes.take(settings(
        model_dir, mode=mode, upload=str(clip), seconds=2.0, inpaint_start=0.2,
        inpaint_end=0.6)))[0]) for mode in ("variation", "continuation", "inpainting")}
    assert lengths == {"variation": 7350, "continuation": 14700, "inpainting": 7350}


@pytest.mark.parametrize("changes, message", [
    ({"mode": "variation"}, "variation needs a clip: upload one first"),
    ({"label": "jazz"}, "unconditional model"),
    ({"seconds": 1e8}, "more than the"),
    ({"mode": "continuation", "upload": "NOT_AUDIO"}, "not readable as audio"),
])
def test_a_mistake_is_one_message(model_dir, tmp_path, changes, message):
    if changes.get("upload") == "NOT_AUDIO":
        changes["upload"] = str(tmp_path / "notes.wav")
        (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(UserError, match=message):
        studio.Studio(tmp_path / "work").take(settings(model_dir, **changes))


def test_a_mistake_is_one_warning_line_in_the_terminal_not_a_traceback(tmp_path, capsys):
    upload = str(tmp_path / "uploads" / "abc" / "notes.wav")
    error = studio.refused(UserError(f"{upload}: not readable as audio"), upload)
    assert error.message == "notes.wav: not readable as audio" and error.print_exception is False
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["warning: a take was refused: notes.wav: not readable as audio"]


def test_the_spectrogram_is_a_readable_colour_image_with_a_frequency_axis(tmp_path):
    """A 1 kHz tone at 8 kHz: tall enough to read, in colour, its line at the height of 1 kHz
    on the axis, kHz labels left of it."""
    rate = 8000
    path = str(tmp_path / "tone.wav")
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * 1000 * np.arange(2 * rate) / rate), rate)
    image = studio.spectrogram(path)
    assert image.dtype == np.uint8 and image.shape[0] >= 300 and image.shape[2] == 3
    plot = image[4:4 + studio.SPECTROGRAM_HEIGHT, studio.SPECTROGRAM_MARGIN:].astype(int)
    assert (np.ptp(plot, axis=2) > 30).mean() > 0.5  # coloured, not grey
    brightest_row = plot.sum(axis=(1, 2)).argmax()
    expected_row = (1 - 1000 / (rate / 2)) * (studio.SPECTROGRAM_HEIGHT - 1)
    assert abs(brightest_row - expected_row) <= 4
    labels = image[:, :studio.SPECTROGRAM_MARGIN - 6]
    assert (labels < 128).any()  # black text on the white margin


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """The page on a free port of 127.0.0.1 in this process, writing under its own folder:
    (its address, that folder)."""
    work = tmp_path_factory.mktemp("studio")
    os.environ.update(GRADIO_TEMP_DIR=str(work / "uploads"), GRADIO_ANALYTICS_ENABLED="False")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page = studio.build_page(studio.Studio(work), str(model_dir), [str(model_dir)])
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                quiet=True, allowed_paths=[str(work)])
    yield f"http://127.0.0.1:{port}/", work
    page.close()


def test_two_visitors_at_once_both_get_their_audio(server, model_dir):
    from gradio_client import Client
    url, _ = server
    values = {**settings(model_dir), "random_seed": False}
    visitors = [Client(url, verbose=False) for _ in range(2)]
    jobs = [visitor.submit(*[values[name] for name in studio.TAKE_INPUTS], api_name="/run_take")
            for visitor in visitors]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda job: job.result(timeout=120), jobs))
    for result in results:
        audio, rate = soundfile.read(result[0])
        assert rate == 7350 and len(audio) == 3675


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"no selenium: {INSTALL}")
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip(f"no headless browser (chromium, chromedriver): {INSTALL}")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


def wait_for(find, seconds=120):
    """The first truthy find() within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError("the page did not show it in time")


def test_the_page_generates_a_take_the_browser_can_fetch(server, browser):
    from selenium.webdriver.common.by import By
    url, work = server
    browser.get(url)
    wait_for(lambda: browser.find_elements(By.ID, "generate"))[0].click()
    link = wait_for(lambda: [element.get_attribute("href") for element in browser.find_elements(
        By.CSS_SELECTOR, "#take a[data-testid=download-link]") if element.get_attribute("href")])
    assert str(work) in link[0]  # served from the studio's own folder
    with urllib.request.urlopen(link[0]) as response:
        audio, rate = soundfile.read(io.BytesIO(response.read()))
    assert rate == 7350 and len(audio) == 10 * 7350 and np.isfinite(audio).all()


def test_an_upload_that_is_not_audio_shows_one_message_and_the_server_goes_on(server, browser,
                                                                             tmp_path):
    from selenium.webdriver.common.by import By
    url, _ = server
    (tmp_path / "notes.wav").write_text("not audio")
    browser.get(url)
    wait_for(lambda: browser.find_elements(By.ID, "generate"))
    [variation] = [element for element in browser.find_elements(By.CSS_SELECTOR, "#mode label")
                   if element.text.strip() == "variation"]
    variation.click()
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(
        str(tmp_path / "notes.wav"))
    time.sleep(2)  # the upload reaches the server
    browser.find_element(By.ID, "generate").click()
    text = wait_for(lambda: [body for body in [browser.find_element(By.TAG_NAME, "body").text]
                             if "not readable as audio" in body])[0]
    assert "notes.wav: not readable as audio" in text and "Traceback" not in text
    with urllib.request.urlopen(url) as response:  # still serving
        assert response.status == 200


def test_a_cascades_take_reports_its_progress_stage_by_stage(cascade_dir, tmp_path):
    reports = []
    studio.Studio(tmp_path / "work").take(settings(cascade_dir),
                                          lambda fraction, line: reports.append((fraction, line)))
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("stage 1/2" in line for _, line in reports)
    assert "stage 2/2" in reports[-1][1]

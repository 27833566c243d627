"""Screenshots of TensorBoard's tabs in headless Chromium, for the README (docs/tensorboard-*.png).

    python scripts/screenshots.py --data-root ../shared/mnist       # a fresh sweep, then the shots
    python scripts/screenshots.py --logdir runs/<sweep>              # the shots of existing runs

Without ``--logdir`` it first trains a fresh sweep of 2 seeds x 2 learning rates (``--epochs``,
default 5, images every epoch) into a temporary folder. Then it serves the runs with
``tensorboard``, opens each tab in Chromium (Debian's ``chromium`` package: ``apt-get install
chromium``; no browser is downloaded) and drives it over the Chrome DevTools Protocol: the
window size, a few clicks (the image sliders to step 0, the projector coloured by label), the
screenshot. The protocol is spoken over a WebSocket written here with the standard library, so
nothing is installed for it.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_FLAGS = (  # what works on a machine without a screen or network, as root
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",  # WebGL in software: the projector draws with it
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tensorboard(logdir: Path, port: int, log, *flags: str) -> subprocess.Popen:
    """``tensorboard`` serving ``logdir`` on 127.0.0.1:``port``, its messages into the file
    ``log`` (a file, not a pipe: a full pipe would stall the server)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port)]
        + ["--host", "127.0.0.1", "--load_fast", "false", *flags],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def wait_for(url: str, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{what} did not answer {url} within {STARTUP_SECONDS} s")


class WebSocket:
    """The client side of RFC 6455, as much as the DevTools protocol needs: text frames."""

    def __init__(self, url: str):
        host, port, path = url.removeprefix("ws://").replace("/", ":", 1).split(":", 2)
        self.socket = socket.create_connection((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /{path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.socket.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.socket.recv(4096)
        if b" 101 " not in response.split(b"\r\n")[0]:
            raise SystemExit(f"Chromium refused the WebSocket: {response[:200]!r}")

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.socket.recv(count - len(data))
            if not chunk:
                raise SystemExit("Chromium closed the DevTools connection")
            data += chunk
        return data

    def send(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        size = len(payload)
        header = bytes([0x81])  # a final text frame
        if size < 126:
            header += bytes([0x80 | size])
        elif size < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", size)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", size)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.socket.sendall(header + mask + masked)

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._read(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._read(8))[0]
            message += self._read(size)  # frames from the server are not masked
            if first & 0x80:  # the last fragment
                return message.decode()


class Browser:
    """One headless Chromium page, driven over the DevTools protocol."""

    def __init__(self, executable: str, profile: Path):
        port = free_port()
        self.process = subprocess.Popen(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(f"http://127.0.0.1:{port}/json/version", self.process, "chromium")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            page = next(target for target in json.load(response) if target["type"] == "page")
        self.socket = WebSocket(page["webSocketDebuggerUrl"])
        self.calls = 0

    def call(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            reply = json.loads(self.socket.receive())
            if reply.get("id") == self.calls:  # events in between are not needed
                if "error" in reply:
                    raise SystemExit(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str, size: tuple[int, int], settle: float) -> None:
        width, height = size
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.navigate", url=url)
        time.sleep(settle)  # TensorBoard loads its data after the page

    def click(self, x: float, y: float, count: int = 1) -> None:
        """A real mouse click (``count`` 2: a double click) at (x, y) in the page."""
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for clicks in range(1, count + 1):
            for kind in ("mousePressed", "mouseReleased"):
                self.call(
                    "Input.dispatchMouseEvent",
                    type=kind,
                    x=x,
                    y=y,
                    button="left",
                    clickCount=clicks,
                )

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


# JavaScript run in the page before a screenshot, after FIND_ALL. TensorBoard's tabs are web
# components (the projector in an iframe of the same origin), so elements are found through every
# shadow root and frame.
FIND_ALL = """
function findAll(selector, root = document) {
  const found = [...root.querySelectorAll(selector)];
  for (const element of root.querySelectorAll('*')) {
    if (element.shadowRoot) found.push(...findAll(selector, element.shadowRoot));
    if (element.tagName === 'IFRAME' && element.contentDocument) {
      found.push(...findAll(selector, element.contentDocument));
    }
  }
  return found;
}
"""
SLIDERS_TO_STEP_0 = """
for (const slider of findAll('image-card-component input[type=range]')) {
  slider.value = slider.min;
  slider.dispatchEvent(new Event('input', {bubbles: true}));
  slider.dispatchEvent(new Event('change', {bubbles: true}));
}
"""
COST_ON_A_LOG_SCALE = """
findAll('paper-icon-button[icon=line-weight]')[0].click();
"""
# Where to click, as a JavaScript expression giving [x, y]: the Network's box in GRAPHS (a double
# click opens it), then "Fit to screen".
NETWORK_NODE = """
const box = findAll('g.node').find(n => n.getAttribute('data-name') === 'Network')
  .getBoundingClientRect();
[box.x + box.width / 2, box.y + box.height / 2]
"""
FIT_TO_SCREEN = """
const fit = findAll('*')
  .find(e => e.children.length === 0 && e.textContent.trim() === 'Fit to screen')
  .getBoundingClientRect();
[fit.x + fit.width / 2, fit.y + fit.height / 2]
"""
COLOR_BY_LABEL = """
const panel = findAll('vz-projector-data-panel')[0];
panel.selectedColorOptionName = 'label';
panel.selectedLabelOption = 'label';
"""


@dataclass(frozen=True)
class Shot:
    name: str  # docs/tensorboard-<name>.png
    address: str  # after http://host:port/
    size: tuple[int, int]
    script: str = ""  # JavaScript to run once the tab has loaded
    clicks: tuple[tuple[str, int], ...] = ()  # then (where, 1 or 2 clicks), one after another
    settle: float = 12.0


ONE_RUN_IMAGES = "?runFilter=%5Elr1_s0%24&tagFilter=%5Eimages%2F&smoothing=0#timeseries"
SHOTS = (
    Shot("hparams", "#hparams", (1920, 460)),
    Shot(
        "custom-scalars",
        "#custom_scalars&_smoothingWeight=0",
        (1400, 820),
        COST_ON_A_LOG_SCALE,
    ),
    Shot("step-0", ONE_RUN_IMAGES, (1400, 760), SLIDERS_TO_STEP_0),
    Shot("images", ONE_RUN_IMAGES, (1400, 760)),
    Shot("text", "#text&tagFilter=training_settings", (1400, 980)),
    Shot("pr-curves", "#pr_curves", (1400, 900)),
    Shot("projector", "#projector", (1400, 900), COLOR_BY_LABEL, settle=25.0),
    Shot("graphs", "#graphs", (1400, 1000), clicks=((NETWORK_NODE, 2), (FIT_TO_SCREEN, 1))),
)


def fresh_sweep(data_root: str, epochs: int, runs_dir: Path) -> Path:
    from gd_torch.core.settings import RunOptions, TrainingSettings
    from gd_torch.tools.sweep import sweep

    options = RunOptions(data_root=data_root, runs_dir=str(runs_dir), image_every=1)
    return sweep(TrainingSettings(epochs=epochs), options, [0, 1], [1.0, 3.0]).sweep_dir


def take(logdir: Path, out: Path, chromium: str, names: list[str] | None = None) -> list[Path]:
    """Serve ``logdir`` with tensorboard and save each shot as out/tensorboard-<name>.png."""
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        log = open(Path(scratch) / "tensorboard.log", "wb")
        server = start_tensorboard(logdir, port, log)
        written = []
        try:
            base = f"http://127.0.0.1:{port}/"
            wait_for(base + "data/logdir", server, "tensorboard")
            browser = Browser(chromium, Path(scratch) / "profile")
            try:
                for shot in SHOTS:
                    if names and shot.name not in names:
                        continue
                    browser.open(base + shot.address, shot.size, shot.settle)
                    if shot.script:
                        browser.evaluate(FIND_ALL + shot.script)
                        time.sleep(3)
                    for where, count in shot.clicks:
                        browser.click(*browser.evaluate(FIND_ALL + where), count)
                        time.sleep(3)
                    path = out / f"tensorboard-{shot.name}.png"
                    browser.screenshot(path)
                    written.append(path)
                    print(f"wrote {path}", flush=True)
            finally:
                browser.close()
        finally:
            server.kill()
            server.wait(timeout=30)
            log.close()
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="screenshots", description="Screenshots of TensorBoard's tabs for the README."
    )
    parser.add_argument("--logdir", help="runs to show (default: train a fresh 2 x 2 sweep)")
    parser.add_argument("--data-root", default=os.environ.get("GD_TORCH_DATA", "data"))
    parser.add_argument("--epochs", type=int, default=5, help="of the fresh sweep (default: 5)")
    parser.add_argument("--out", default="docs", help="where the PNGs go (default: docs)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[s.name for s in SHOTS])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    arguments = parser.parse_args(argv)
    if not shutil.which(arguments.chromium):
        raise SystemExit(
            f"{arguments.chromium} not found: apt-get install chromium (Debian's package)"
        )
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as runs:
        logdir = arguments.logdir or fresh_sweep(arguments.data_root, arguments.epochs, Path(runs))
        take(Path(logdir), out, arguments.chromium, arguments.only)

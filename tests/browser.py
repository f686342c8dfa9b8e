"""A real headless Chromium (Debian's package) driven over the DevTools protocol, for the tests of pages a person
opens: navigate, run JavaScript in the page, collect console errors, take screenshots. Every wait is for an event
(a message from the browser, a condition in the page); the bounds only end a test that would hang."""
from __future__ import annotations

import asyncio
import base64
import json
import re
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import aiohttp

CHROMIUM = shutil.which("chromium")


class Page:
    def __init__(self, socket, session):
        self.socket, self.session = socket, session
        self.counter = 0
        self.errors: list[str] = []
        self.events: dict[str, asyncio.Event] = {}
        self.replies: dict[int, asyncio.Future] = {}
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        async for message in self.socket:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self.replies:
                self.replies.pop(data["id"]).set_result(data)
                continue
            method, params = data.get("method", ""), data.get("params", {})
            if method == "Runtime.exceptionThrown":
                self.errors.append(params["exceptionDetails"].get("exception", {}).get("description", str(params)))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                self.errors.append(" ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                self.errors.append(params["entry"]["text"])
            if method in self.events:
                self.events[method].set()

    async def send(self, method: str, **params) -> dict:
        self.counter += 1
        future = asyncio.get_running_loop().create_future()
        self.replies[self.counter] = future
        await self.socket.send_json({"id": self.counter, "method": method, "params": params})
        reply = await asyncio.wait_for(future, timeout=300)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def open(self, url: str) -> None:
        for domain in ("Runtime", "Log", "Page"):
            await self.send(f"{domain}.enable")
        self.events["Page.loadEventFired"] = asyncio.Event()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self.events["Page.loadEventFired"].wait(), timeout=300)

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:200]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_until(self, expression: str, timeout: float = 300) -> None:
        """Until ``expression`` is true in the page (checked as the page runs, not after a guessed delay)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not await self.evaluate(expression):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"never true within {timeout} s: {expression}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path, width: int = 1400, height: int = 1000) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                        mobile=False)
        shot = await self.send("Page.captureScreenshot", format="png")
        Path(path).write_bytes(base64.b64decode(shot["data"]))


async def run_in_page(url: str, profile: Path, steps) -> None:
    """Start Chromium, open ``url`` in a page and run ``await steps(page)``; the browser ends with the test."""
    process = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        for line in process.stderr:  # Chromium says where it listens once it is ready
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                break
        else:
            raise RuntimeError("chromium ended before it listened for DevTools")
        address = found.group(1).split("/devtools/")[0].replace("ws://", "http://")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{address}/json/list") as response:
                target = next(t for t in await response.json() if t["type"] == "page")
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                page = Page(socket, session)
                await page.open(url)
                await steps(page)
                page.reader.cancel()
    finally:
        end_process_group(process)


def end_process_group(process: subprocess.Popen, bound: float = 60) -> None:
    """Kill Chromium with its helpers (zygote, renderers, network and storage services, which write into the
    profile) and wait until none of them runs any more, so that the caller can remove the profile: killing the
    browser process alone left a helper writing into ``Default`` while the profile was being removed (CI, 2026-12-07).
    The helpers share the process group of the browser, which starts a session of its own."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    deadline = time.monotonic() + bound
    while running_in_group(process.pid):  # the kernel ends them on its own time; their exit is what is waited for
        if time.monotonic() > deadline:
            raise TimeoutError(f"chromium's helpers in process group {process.pid} still ran {bound} s after SIGKILL")
        time.sleep(0.05)


def running_in_group(group: int) -> bool:
    """Whether a process of ``group`` has not yet exited (a zombie has: its files are closed)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended while the table was read
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            return True
    return False


def in_browser(url: str, profile: Path, steps) -> None:
    asyncio.run(run_in_page(url, profile, steps))

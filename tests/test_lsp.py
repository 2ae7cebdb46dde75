"""Editors: the real yaml-language-server (npm, run with node over stdio LSP) reads the
spec schema through the modeline every spec starts with, and gives diagnostics and
completion from it.

The server is installed by the README's test command (and so by .ci/run) into
.ci/node; the schema store is switched off, so the server fetches nothing.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from needs import absent

from runner.errors import SpecError
from runner.spec import load_text

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / ".ci" / "node"
SERVER = NODE_DIR / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
TIMEOUT_S = 30
SETTINGS = {"yaml": {"validate": True, "completion": True, "hover": True,
                     "schemaStore": {"enable": False}, "schemas": {}}}


def pinned_version() -> str:
    """The version .ci/run installs (the README's test command is the same line)."""
    match = re.search(r"yaml-language-server@([0-9.]+)", (ROOT / ".ci" / "run").read_text())
    assert match, ".ci/run does not install yaml-language-server"
    return match.group(1)


class Client:
    """A minimal LSP client: Content-Length framing, one reader thread, answers the
    server's own requests (workspace/configuration) with SETTINGS."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while (line := out.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if length is None:
                self.inbox.put(None)  # the server is gone
                return
            self.inbox.put(json.loads(out.read(length)))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.wait(lambda m: m.get("id") == self.next_id and "method" not in m)["result"]

    def wait(self, wanted: Any) -> dict[str, Any]:
        while True:
            try:
                message = self.inbox.get(timeout=TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"no answer from yaml-language-server in {TIMEOUT_S} s") \
                    from None
            if message is None:
                stderr = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"yaml-language-server exited: {stderr[-2000:]}")
            if "id" in message and "method" in message:  # a request from the server
                self.send({"id": message["id"], "result": self._answer(message)})
            elif wanted(message):
                return message

    @staticmethod
    def _answer(message: dict[str, Any]) -> Any:
        if message["method"] == "workspace/configuration":
            return [SETTINGS.get(item.get("section"), None) for item in message["params"]["items"]]
        return None

    def diagnostics(self, uri: str, text: str) -> list[dict[str, Any]]:
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "yaml", "version": 1, "text": text}})
        found = self.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                          and m["params"]["uri"] == uri)
        return found["params"]["diagnostics"]

    def close(self) -> None:
        try:
            self.request("shutdown", {})
            self.notify("exit", {})
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[Client]:
    if shutil.which("node") is None:
        absent("node is not installed (the editor tests run yaml-language-server with it)",
               "apt-get install nodejs npm")
    if not SERVER.exists():
        absent(f"yaml-language-server is not installed in {NODE_DIR}",
               f"npm install --prefix .ci/node yaml-language-server@{pinned_version()} "
               "(the README's test command does)")
    client = Client(["node", str(SERVER), "--stdio"])
    try:
        client.request("initialize", {
            "processId": os.getpid(), "rootUri": ROOT.as_uri(),
            "capabilities": {"workspace": {"configuration": True},
                             "textDocument": {"publishDiagnostics": {}, "completion": {}}}})
        client.notify("initialized", {})
        client.notify("workspace/didChangeConfiguration", {"settings": SETTINGS})
        yield client
    finally:
        client.close()


def uri_in_specs(name: str) -> str:
    """A document beside the shipped specs (never written to disk): its modeline
    `$schema=../schemas/spec.schema.json` resolves to the repository's schema."""
    return (ROOT / "specs" / name).as_uri()


def test_the_installed_server_is_the_pinned_one() -> None:
    package = json.loads((SERVER.parents[1] / "package.json").read_text())
    assert package["version"] == pinned_version()


def test_a_typo_gets_a_diagnostic_on_its_line(server) -> None:
    text = (ROOT / "specs" / "one-shot.yaml").read_text().replace("ttl_sec:", "ttl_secs:")
    line = text.splitlines().index("ttl_secs: 2")

    found = server.diagnostics(uri_in_specs("typo.yaml"), text)

    assert [(d["message"], d["range"]["start"]) for d in found] == [
        ("Property ttl_secs is not allowed.", {"line": line, "character": 0})]
    # The editor and `runner validate` point at the same place.
    with pytest.raises(SpecError) as e:
        load_text(text, "typo.yaml")
    assert e.value.lines == [
        f"typo.yaml:{line + 1}:1: ttl_secs: unknown key (did you mean ttl_sec?)"]


def test_shipped_specs_have_no_diagnostics(server) -> None:
    specs = sorted((ROOT / "specs").rglob("*.yaml"))
    assert len(specs) >= 10
    for path in specs:
        assert server.diagnostics(path.as_uri(), path.read_text()) == [], path


def _labels(result: Any) -> list[str]:
    items = result["items"] if isinstance(result, dict) else result
    return [item["label"] for item in items]


def test_completion_under_order_offers_the_order_keys(server) -> None:
    text = ("# yaml-language-server: $schema=../schemas/spec.schema.json\n"
            "version: 1\nkind: one-shot\norder:\n  \n")
    uri = uri_in_specs("complete.yaml")
    server.diagnostics(uri, text)  # opened (a missing-keys diagnostic is expected)

    labels = _labels(server.request("textDocument/completion", {
        "textDocument": {"uri": uri}, "position": {"line": 4, "character": 2}}))

    assert {"symbol", "side", "qty", "limit", "tif", "tag"} <= set(labels)
    assert not {"ttl_sec", "kind", "expect"} & set(labels)  # top-level keys are elsewhere


def test_completion_of_a_value_offers_the_enum(server) -> None:
    text = ("# yaml-language-server: $schema=../schemas/spec.schema.json\n"
            "version: 1\nkind: one-shot\norder:\n  symbol: SPY\n  side: \n")
    uri = uri_in_specs("complete-side.yaml")
    server.diagnostics(uri, text)

    labels = _labels(server.request("textDocument/completion", {
        "textDocument": {"uri": uri}, "position": {"line": 5, "character": 8}}))

    assert {"BUY", "SELL"} <= set(labels)


def test_hover_shows_the_schema_description(server) -> None:
    text = (ROOT / "specs" / "one-shot.yaml").read_text()
    line = text.splitlines().index("ttl_sec: 2")
    uri = uri_in_specs("hover.yaml")
    server.diagnostics(uri, text)

    hover = server.request("textDocument/hover", {
        "textDocument": {"uri": uri}, "position": {"line": line, "character": 2}})

    schema = json.loads((ROOT / "schemas" / "spec.schema.json").read_text())
    assert schema["properties"]["ttl_sec"]["description"] in json.dumps(hover)

"""Snapshots and checkpoints on disk as a fault injector leaves them: real files, real
FAISS, real torch, no mocks.

A good version 1 is published; each case copies it, damages the copy and renames it in
as version 2, as a damaged disk or a buggy publisher would leave it. Where the damage
is the publisher's (weights holding NaN, an index over other vectors), the copy's
checksums are recomputed, as that publisher would have written them: the checksums
then prove nothing, and the checks behind them must refuse the version. Serving keeps
the last good snapshot (503 without one) and says so once per refused version; the
learner stops at start on a checkpoint it cannot resume from, naming the file.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import shutil
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from safetensors.torch import load_file, save_file

from learner.checkpoint import StreamCheckpoint, read_resume_state
from learner.model import ModelConfig
from learner.snapshot import Snapshot, SnapshotError, latest_version, list_versions, load_snapshot
from learner.snapshot_publish import publish_snapshot
from learner.snapshot_store import sha256
from learner.stream_training import ContinuousModule
from learner.synthetic import synthetic_examples
from recoil.core.errors import ConfigError
from recoil.core.topics import TRAINING_EXAMPLES
from serving.app import SnapshotHolder, create_app, watch_snapshots
from serving.metrics import ServingMetrics
from tests.support.cli import config_error
from tests.support.snapshots import untrained_parts

torch.set_num_threads(1)

ARM = "feature_and_labels"
WAIT_SECONDS = 30.0  # generous for a loaded 2-core machine; each wait takes well under 1 s
POLL = 0.01  # the watcher's interval here: a refused version is retried, if at all, at once
REFUSED = "recoil_serving_snapshots_refused_total"


class _Payload:
    """Unpickling this runs code: it creates the file ``marker``. No reader may do it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _publish(store: Path, step: int) -> int:
    examples = synthetic_examples(num_users=6, events_per_user=20, num_items=40, seed=0)
    model, vocabs, meta = untrained_parts(examples, ARM, dim=8, max_len=8, seed=step)
    return publish_snapshot(store, model, vocabs, ARM, meta, step, {0: step}).version


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("published")
    assert _publish(store, step=1) == 1
    return store


@pytest.fixture
def store(published: Path, tmp_path: Path) -> Path:
    """A store holding the good version 1 (a copy: each test damages its own)."""
    return Path(shutil.copytree(published, tmp_path / "store", symlinks=True))


# --- damage to a version's files ----------------------------------------------------


def _manifest(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / "manifest.json").read_text()))


def _edit_manifest(directory: Path, **fields: Any) -> None:
    (directory / "manifest.json").write_text(json.dumps({**_manifest(directory), **fields}))


def _rehash(directory: Path) -> None:
    """Checksum the files as they now are, as a buggy publisher would have (symlinks and
    other non-files keep the digest of the file they replaced)."""
    files = _manifest(directory)["files"]
    for name in files:
        path = directory / name
        if path.is_file() and not path.is_symlink():
            files[name] = sha256(path)
    _edit_manifest(directory, files=files)


def _plant(store: Path, version: int, damage: Callable[[Path], None]) -> None:
    """A copy of version 1, damaged, renamed in as ``version`` (never seen half-done)."""
    staging = store / ".tmp-bad"
    shutil.copytree(store / "v00000001", staging)
    _edit_manifest(staging, version=version)
    damage(staging)
    os.rename(staging, store / f"v{version:08d}")
    (store / "LATEST").write_text(f"{version}\n")


def _save_weights(directory: Path, change: Callable[[str, torch.Tensor], torch.Tensor]) -> None:
    weights = load_file(directory / "model.safetensors")
    save_file({k: change(k, t) for k, t in weights.items()}, directory / "model.safetensors")
    _rehash(directory)


def _save_embeddings(directory: Path, embeddings: np.ndarray, **save: Any) -> None:
    np.save(directory / "item_embeddings.npy", embeddings, **save)
    _rehash(directory)


def _save_index(directory: Path, vectors: np.ndarray, first_id: int = 2) -> None:
    index = faiss.IndexIDMap(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, np.arange(first_id, first_id + len(vectors), dtype=np.int64))
    faiss.write_index(index, str(directory / "index.faiss"))
    _rehash(directory)


def _embeddings(directory: Path) -> np.ndarray:
    return np.load(directory / "item_embeddings.npy")


def _truncate(name: str) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        path = directory / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        _rehash(directory)

    return damage


def _fifo(name: str) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        (directory / name).unlink()
        os.mkfifo(directory / name)  # open() for reading waits for a writer: forever

    return damage


def _symlink_out(directory: Path) -> None:
    outside = directory.parent.parent / "outside.json"  # beside the store, same content
    shutil.copy(directory / "vocab_items.json", outside)
    (directory / "vocab_items.json").unlink()
    (directory / "vocab_items.json").symlink_to(outside)


def _a_directory_for_a_file(directory: Path) -> None:
    (directory / "items.json").unlink()
    (directory / "items.json").mkdir()  # as unreadable as a file without permission


def _other_vectors(directory: Path) -> None:
    """An index of the right size and dimension over vectors the model does not have."""
    rows = _embeddings(directory)[2:]
    _save_index(directory, np.random.default_rng(0).normal(size=rows.shape).astype(np.float32))


def _marker(directory: Path) -> Path:
    """Where a ``_Payload`` planted in ``directory`` would leave its mark: the test's
    tmp_path (``directory`` is ``tmp_path/store/.tmp-bad``)."""
    return directory.parent.parent / "unpickled"


def _pickled_embeddings(directory: Path) -> None:
    payload = np.array([_Payload(_marker(directory))], dtype=object)
    _save_embeddings(directory, payload, allow_pickle=True)


def _pickled_weights(directory: Path) -> None:
    torch.save({"item_input.weight": _Payload(_marker(directory))}, directory / "model.safetensors")
    _rehash(directory)


def _items_row(directory: Path) -> None:
    items = json.loads((directory / "items.json").read_text())
    items["rows"][0][2] = {"creator": "not an id"}  # served as creator_id as it is
    (directory / "items.json").write_text(json.dumps(items))
    _rehash(directory)


def _garbage_index(directory: Path) -> None:
    (directory / "index.faiss").write_bytes(b"IxMp" + bytes(range(256)) * 4)
    _rehash(directory)


def _flipped_byte(directory: Path) -> None:
    index = directory / "index.faiss"
    data = bytearray(index.read_bytes())
    data[-1] ^= 0xFF
    index.write_bytes(bytes(data))


def _model_config(**fields: Any) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        _edit_manifest(directory, model_config={**_manifest(directory)["model_config"], **fields})

    return damage


def _manifest_text(text: str) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        (directory / "manifest.json").write_text(text)

    return damage


def _manifest_fields(**fields: Any) -> Callable[[Path], None]:
    return lambda directory: _edit_manifest(directory, **fields)


def _nan(name: str, tensor: torch.Tensor) -> torch.Tensor:
    return torch.full_like(tensor, float("nan")) if tensor.is_floating_point() else tensor


def _short_item_table(name: str, tensor: torch.Tensor) -> torch.Tensor:
    return torch.zeros(3, 8) if name == "item_input.weight" else tensor


# damage -> what the refusal says (a regular expression)
DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    # the manifest
    "manifest truncated": (_manifest_text('{"fo'), "manifest.json: not JSON"),
    "manifest a list": (_manifest_text("[1]"), "format is 'list'"),
    "manifest over 1 MiB": (_manifest_fields(extra={"x": "y" * 2**20}), "bytes, over the"),
    "manifest a fifo": (_fifo("manifest.json"), "manifest.json is not a regular file"),
    "version a string": (_manifest_fields(version="2"), "version '2' is not a positive integer"),
    "version of another directory": (_manifest_fields(version=5), "its manifest says 5"),
    "created_at NaN": (_manifest_fields(created_at=float("nan")), "created_at or offsets"),
    "files not a mapping": (_manifest_fields(files=5), "files lists 5, not a checksum"),
    "files empty: nothing checked": (_manifest_fields(files={}), "files lists \\[\\], not"),
    "files name one outside": (
        lambda d: _edit_manifest(d, files={**_manifest(d)["files"], "../../x": ""}),
        "files lists \\['../../x'"),
    "model_config not the weights'": (_model_config(embedding_dim=4),
                                      "size mismatch for item_input.weight"),
    "model_config wider than the weights": (_model_config(embedding_dim=16, hidden_dim=16),
                                            "take at least 1558 values; the weights hold"),
    "model_config of 4 million items": (_model_config(num_items=4_000_000),
                                        "tables \\(4000000 items.* take at least \\d+ values"),
    "model_config of a deep wide GRU": (_model_config(hidden_dim=4096, num_layers=64),
                                        "gru encoder \\(64 layers, width 4096\\) take at least"),
    # the files it names
    "a file missing": (lambda d: (d / "index.faiss").unlink(), "FileNotFoundError"),
    "a file symlinked outside the store": (_symlink_out, "vocab_items.json is a symlink"),
    "a fifo for the weights": (_fifo("model.safetensors"), "safetensors is not a regular file"),
    "a directory for a file": (_a_directory_for_a_file, "items.json is not a regular file"),
    "a flipped byte": (_flipped_byte, "checksum does not match"),
    "weights truncated": (_truncate("model.safetensors"), "SafetensorError"),
    "weights a pickle": (_pickled_weights, "SafetensorError"),
    "weights NaN": (lambda d: _save_weights(d, _nan), "holds NaN or infinite values"),
    "weights of another shape": (lambda d: _save_weights(d, _short_item_table),
                                 "size mismatch for item_input.weight"),
    "embeddings truncated": (_truncate("item_embeddings.npy"), "ValueError"),
    # 9 columns: D = 8 and the items' ranking offsets (the arm takes dislike labels)
    "embeddings of another shape": (lambda d: _save_embeddings(d, _embeddings(d)[:5]),
                                    "embeddings are float32 \\(5, 9\\), the model's"),
    "embeddings float64": (lambda d: _save_embeddings(d, _embeddings(d).astype(np.float64)),
                           "item embeddings are float64"),
    "embeddings infinite": (lambda d: _save_embeddings(d, np.full_like(_embeddings(d), np.inf)),
                            "item embeddings are not the model's"),
    "embeddings a pickle": (_pickled_embeddings, "Object arrays cannot be loaded"),
    "index garbage": (_garbage_index, "RuntimeError: Error in"),
    "index of fewer items": (lambda d: _save_index(d, _embeddings(d)[2:7]),
                             "the index holds 5 vectors of 9 dimensions, the model 33"),
    "index of another dimension": (lambda d: _save_index(d, np.ones((33, 4), np.float32)),
                                   "the index holds 33 vectors of 4 dimensions"),
    "index over other vectors": (_other_vectors, "scores items otherwise than the model"),
    "index under other ids": (lambda d: _save_index(d, _embeddings(d)[2:], first_id=100),
                              "the index answers item rows"),
    "index holding NaN": (lambda d: _save_index(d, np.full_like(_embeddings(d)[2:], np.nan)),
                          "the index answers item rows \\[-1\\]"),
    "vocabulary truncated": (_truncate("vocab_items.json"), "JSONDecodeError"),
    "item table of non-ids": (_items_row, "has a row of non-ids"),
}  # fmt: skip


def _load_within(store: Path, version: int, seconds: float = 10.0) -> BaseException | Snapshot:
    """``load_snapshot(store, version)`` on a thread: its snapshot or what it raised. A
    reader stuck in a FIFO fails the test, and is let go by opening the FIFO to write."""
    outcome: list[BaseException | Snapshot] = []

    def load() -> None:
        try:
            outcome.append(load_snapshot(store, version))
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(seconds)
    if reader.is_alive():
        for fifo in (store / f"v{version:08d}").iterdir():
            if fifo.is_fifo():
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(seconds)
        raise AssertionError(f"load_snapshot of version {version} blocked for {seconds:.0f}s")
    return outcome[0]


@pytest.mark.parametrize("case", DAMAGES)
def test_a_damaged_version_is_refused_with_one_line_saying_why(
    store: Path, tmp_path: Path, case: str
) -> None:
    damage, reason = DAMAGES[case]
    _plant(store, 2, damage)
    refused = _load_within(store, 2)
    assert isinstance(refused, SnapshotError), f"{case}: {refused!r}"
    message = str(refused)
    assert "v00000002" in message and "\n" not in message and len(message) < 700, message
    assert re.search(reason, message), message
    assert not (tmp_path / "unpickled").exists(), "a pickle in the snapshot was unpickled"
    assert load_snapshot(store, 1).version == 1  # the good version is untouched


# --- the store: version names, LATEST, the directory itself -------------------------


def test_only_ascii_eight_digit_directories_are_versions(store: Path) -> None:
    for odd in ("vabc", "v1", "v0000000x", "v00000002.bak", "v١٢٣٤٥٦٧٨", "v００００００03"):
        (store / odd).mkdir()
    (store / "v99999999").mkdir()  # eight digits: a version, however far off
    assert list_versions(store) == [1, 99999999]
    shutil.rmtree(store / "v99999999")
    (store / "LATEST").unlink()
    assert latest_version(store) == 1


@pytest.mark.parametrize("text", ["²", "١٢", "-3", "1e3", "9" * 300, "\x00\xff"])
def test_a_latest_that_names_no_version_leaves_it_to_the_scan(store: Path, text: str) -> None:
    (store / "LATEST").write_bytes(text.encode("utf-8", "surrogateescape"))
    assert latest_version(store) == 1


def test_serve_refuses_a_store_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "store").write_text("not a directory")
    err = config_error(["serve", "--store", str(tmp_path / "store")], capsys)
    assert "is a file, not a directory" in err


# --- serving: the watcher that hot-swaps versions ------------------------------------


async def _wait(condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while True:
        met = condition()
        if await met if inspect.isawaitable(met) else met:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS:.0f}s: {what}")
        await asyncio.sleep(0.02)


class _Served:
    """The recommend API over ``store`` (``start`` it in the event loop), its watcher
    polling every ``POLL`` seconds, and every load it attempts: (version, outcome)."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.attempts: list[tuple[int, str]] = []
        self.registry = CollectorRegistry()

    async def start(self) -> TestClient[Any, Any]:
        holder, metrics = SnapshotHolder(), ServingMetrics(self.registry)

        def watcher() -> Any:
            return watch_snapshots(holder, lambda: latest_version(self.store), self._load,
                                   metrics, POLL)  # fmt: skip

        app = create_app(holder, None, self.registry, metrics, background=[watcher])
        self.client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await self.client.start_server()
        return self.client

    def _load(self, version: int) -> Snapshot:
        try:
            snapshot = load_snapshot(self.store, version)
        except Exception as exc:
            self.attempts.append((version, type(exc).__name__))
            raise
        self.attempts.append((version, "ok"))
        return snapshot

    def tried(self, version: int) -> bool:
        return any(v == version for v, _ in self.attempts)

    async def version(self) -> int | None:
        """The version answering POST /recommend (None: a 503), its answer checked sane."""
        resp = await self.client.post("/recommend", json={"history": [], "k": 3})
        if resp.status == 503:
            assert (await resp.json())["error"] == "no_snapshot"
            return None
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert len(body["items"]) == 3 and all(np.isfinite(i["score"]) for i in body["items"])
        return int(body["model_version"])

    async def serves(self, expected: int) -> bool:
        return await self.version() == expected


def _one_line_each(caplog: pytest.LogCaptureFixture, fragment: str, count: int) -> list[str]:
    """The ``count`` lines serving logged saying ``fragment``: one line each, no traceback."""
    records = [r for r in caplog.records if r.name == "serving.app" and fragment in r.getMessage()]
    assert len(records) == count, [r.getMessage() for r in records]
    for record in records:
        assert record.exc_info is None and "\n" not in record.getMessage(), record.getMessage()
    return [r.getMessage() for r in records]


def test_each_refused_version_is_one_line_and_the_last_good_one_stays_served(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """v2 has NaN weights and v3 an index over other vectors, both checksummed by their
    publisher; LATEST then names v7, which is not there. Each is refused once, in one
    line, v1 answering all along; the learner's next version, 8, is served."""
    served = _Served(store)

    async def scenario() -> None:
        client = await served.start()
        try:
            await _wait(lambda: served.serves(1), "the server loads v1")
            _plant(store, 2, lambda d: _save_weights(d, _nan))
            await _wait(lambda: served.tried(2), "the watcher tries v2")
            _plant(store, 3, _other_vectors)
            await _wait(lambda: served.tried(3), "the watcher tries v3")
            (store / "LATEST").write_text("7\n")
            await _wait(lambda: served.tried(7), "the watcher tries v7")
            await asyncio.sleep(30 * POLL)  # thirty polls: none tries a refused version again
            assert await served.version() == 1
            assert served.registry.get_sample_value("recoil_serving_snapshot_version") == 1
            assert served.registry.get_sample_value(REFUSED) == 3  # one count a version
            assert _publish(store, step=8) == 8
            await _wait(lambda: served.serves(8), "the server moves on to the good v8")
        finally:
            await client.close()

    with caplog.at_level(logging.INFO, logger="serving.app"):
        asyncio.run(scenario())
    assert served.attempts == [(1, "ok"), (2, "SnapshotError"), (3, "SnapshotError"),
                               (7, "SnapshotError"), (8, "ok")]  # fmt: skip
    lines = _one_line_each(caplog, "refused snapshot version", 3)
    assert "holds NaN" in lines[0] and "scores items otherwise" in lines[1], lines
    assert "v00000007 has no manifest.json" in lines[2], lines
    assert all(line.endswith("still serving version 1") for line in lines), lines


def test_serving_a_store_of_only_bad_versions_answers_503_and_says_so(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (store / "v00000001" / "manifest.json").write_text('{"format": "recoil.snap')  # truncated
    served = _Served(store)

    async def scenario() -> None:
        client = await served.start()
        try:
            await _wait(lambda: served.tried(1), "the watcher tries v1")
            await asyncio.sleep(30 * POLL)
            assert await served.version() is None
            assert (await client.get("/readyz")).status == 503
            assert served.registry.get_sample_value(REFUSED) == 1
        finally:
            await client.close()

    with caplog.at_level(logging.INFO, logger="serving.app"):
        asyncio.run(scenario())
    assert served.attempts == [(1, "SnapshotError")]
    (line,) = _one_line_each(caplog, "refused snapshot version 1", 1)
    assert "manifest.json: not JSON" in line, line
    assert line.endswith("no snapshot is served yet: requests get 503"), line


def test_a_store_that_cannot_be_read_is_logged_once_until_it_can(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = _Served(store)

    async def scenario() -> None:
        client = await served.start()
        try:
            await _wait(lambda: served.serves(1), "the server loads v1")
            (store / "LATEST").unlink()
            (store / "LATEST").mkdir()  # what a restore gone wrong might leave
            await asyncio.sleep(30 * POLL)
            assert await served.version() == 1
            (store / "LATEST").rmdir()
            assert _publish(store, step=2) == 2
            await _wait(lambda: served.serves(2), "the server loads v2")
        finally:
            await client.close()

    with caplog.at_level(logging.INFO, logger="serving.app"):
        asyncio.run(scenario())
    (line,) = _one_line_each(caplog, "cannot look for new snapshots", 1)
    assert "IsADirectoryError" in line and line.endswith("still serving version 1"), line


# --- the learner's checkpoint, as `recoil learn` resumes from it ----------------------


def _checkpoint(**changes: Any) -> dict[str, Any]:
    """What the learner writes to last.ckpt (Lightning's entries and its stream state),
    for a small model under the default arm and topic, with ``changes`` made."""
    module = ContinuousModule.from_config(
        ModelConfig(num_items=7, num_creators=4, embedding_dim=8, hidden_dim=8, max_len=8)
    )
    checkpoint: dict[str, Any] = {
        "epoch": 0,
        "global_step": 3,
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
    }
    StreamCheckpoint(
        arm=ARM, topic=TRAINING_EXAMPLES, offsets={0: 5}, vocab_items=("a", "b", "c", "d", "e"),
        vocab_creators=("x", "y"), items_meta={}, seen_ids=("e1",), examples_total=5,
        lineage_files={"trained.jsonl": 0},
    ).to_checkpoint(checkpoint)  # fmt: skip
    return {**checkpoint, **changes}


def _hparams(**model_config: Any) -> dict[str, Any]:
    hparams = _checkpoint()["hyper_parameters"]
    return {**hparams, "model_config": {**hparams["model_config"], **model_config}}


def _write_checkpoint(path: Path, **changes: Any) -> None:
    torch.save(_checkpoint(**changes), path)


def _truncated_checkpoint(path: Path) -> None:
    _write_checkpoint(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _payload_checkpoint(path: Path) -> None:
    _write_checkpoint(path, callbacks={"x": _Payload(path.parent.parent / "unpickled")})


def _state(change: Callable[[dict[str, torch.Tensor]], object]) -> Callable[[Path], None]:
    """A checkpoint whose state_dict ``change`` edited in place."""

    def write(path: Path) -> None:
        state = _checkpoint()["state_dict"]
        change(state)
        _write_checkpoint(path, state_dict=state)

    return write


def _snapshot_weights(path: Path) -> None:
    save_file({"item_input.weight": torch.zeros(7, 8)}, path)


# what is in last.ckpt -> what the one line says (a regular expression)
CHECKPOINTS: dict[str, tuple[Callable[[Path], object], str]] = {
    "truncated": (_truncated_checkpoint, "cannot be read as a checkpoint"),
    "empty": (lambda p: p.write_bytes(b""), "cannot be read as a checkpoint \\(EOFError"),
    "JSON text": (lambda p: p.write_text('{"global_step": 3}'), "it is not a torch file"),
    "a snapshot's weights": (_snapshot_weights, "it is not a torch file"),
    "a pickle that runs code": (_payload_checkpoint, "holds objects other than tensors"),
    "a directory": (lambda p: p.mkdir(), "is not a file"),
    "a torch file of a list": (lambda p: torch.save([1, 2], p), "is not a checkpoint of"),
    "another program's": (lambda p: torch.save({"state_dict": {}}, p), "is not a checkpoint of"),
    "hyper_parameters a list": (lambda p: _write_checkpoint(p, hyper_parameters=[1]),
                                "lacks Lightning's global_step .*, hyper_parameters"),
    "global_step a string": (lambda p: _write_checkpoint(p, global_step="3"),
                             "lacks Lightning's global_step"),
    "state_dict a list": (lambda p: _write_checkpoint(p, state_dict=[1]), "or state_dict"),
    "weights of another width": (
        _state(lambda w: w.update({"model.to_state.weight": torch.zeros(8, 3)})),
        "its weights do not fit its own hyper_parameters .*to_state.weight"),
    "a weight missing": (_state(lambda w: w.pop("model.to_state.weight")),
                         "its weights do not fit .*Missing key"),
    "weights NaN": (_state(lambda w: w["model.to_state.weight"].fill_(float("nan"))),
                    "weight model.to_state.weight holds NaN"),
    "hyper_parameters of another module": (
        lambda p: _write_checkpoint(p, hyper_parameters={**_hparams(), "hidden": 3}),
        "its hyper_parameters do not make the learner's model .*'hidden'"),
    "model_config out of range": (
        lambda p: _write_checkpoint(p, hyper_parameters=_hparams(embedding_dim=0)),
        "embedding_dim must be >= 1"),
}  # fmt: skip


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """`recoil learn` installs its own SIGINT and SIGTERM handlers: put pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.mark.usefixtures("signal_handlers")
@pytest.mark.parametrize("case", CHECKPOINTS)
def test_learn_stops_at_start_on_a_checkpoint_it_cannot_resume_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """Before the broker is reached (there is none: port 1 answers nothing)."""
    make, reason = CHECKPOINTS[case]
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    make(directory / "last.ckpt")
    argv = ["learn", "--bootstrap-servers", "127.0.0.1:1", "--store", str(tmp_path / "store"),
            "--checkpoint-dir", str(directory)]  # fmt: skip
    err = config_error(argv, capsys)
    line = err.strip().splitlines()[-1]
    assert str(directory / "last.ckpt") in line and re.search(reason, line), line
    assert "point --checkpoint-dir at an empty directory" in line, line
    assert "weights_only=False" not in err and len(line) < 700, line
    assert not (tmp_path / "unpickled").exists(), "the checkpoint's pickle was run"


def test_a_good_checkpoint_still_resumes(tmp_path: Path) -> None:
    _write_checkpoint(tmp_path / "last.ckpt")
    resume = read_resume_state(tmp_path / "last.ckpt")
    assert resume.step == 3 and resume.stream.offsets == {0: 5}
    ContinuousModule(**resume.hparams).load_state_dict(_checkpoint()["state_dict"])
    with pytest.raises(ConfigError, match="no learner checkpoint at"):
        read_resume_state(tmp_path / "absent.ckpt")

"""HDF5 logs (h5py): run logs with checkpoints, written atomically.

Every babysit log is an HDF5 file whose root attribute ``babysit_format`` names
its kind (``"run"`` for ``babysit train``; a root ``format="babysit-<kind>"``
attribute counts too); :func:`read_log` dispatches on it through
:data:`READERS`, so another kind (a search log) plugs in with
``register_reader("search", reader)`` where ``reader(h5file, path)`` returns an
object with a ``kind`` attribute (``babysit report`` renders by kind). Logs are
untrusted input: ``read_log`` checks the whole file first and readers read every
value through :mod:`babysit.log_checks`, so a damaged or hostile log is one
StoreError naming the file and the part, before anything is allocated for it.

Layout of a run log (spec §6)::

    /                          attrs: babysit_format="run", babysit_version,
                               recipe (resolved recipe, YAML text), name, seed,
                               status (running|finished|interrupted|diverged),
                               result (JSON text of the final Result, if any),
                               iterations_per_epoch, ...
    /history/iteration/{loss,lr}            (T,) one entry per iteration
    /history/epoch/<metric>                 (E,) epoch, train_loss, val_loss,
                                            train_accuracy, val_accuracy, lr, ...
    /history/monitors/<monitor>/<param>     (E,) update_ratio, grad_norm
    /history/layers/<layer>/<stat>          (E,) mean, std, near_zero, saturated, dead
    /checkpoints/<which>/<param>            which in last, best, average; datasets
                                            named by parameter ("0.W", "3.gamma")
    /checkpoints/<which>/buffers/<layer>.<name>   non-learned layer state
                                            (batchnorm running_mean / running_var)
    /checkpoints/last/optimizer/<key>       optimizer state_dict ("t", "0.W/m", ...)
    /checkpoints/last/average/<key>         parameter-average state, when averaging
    /checkpoints/last                       attrs: epoch, iteration, rng states (JSON)
    /ensemble                               only for `train --ensemble` (absent in other
                                            logs and in logs older than it); attrs: members,
                                            checkpoint_ensemble (K), polyak_beta, comparison
                                            (JSON text of the result's metrics["ensemble"])
    /ensemble/members/<k>                   attrs: seed, status, epochs_run, val_accuracy, ...
    /ensemble/members/<k>/final             the member's final parameters and buffers/
                                            (a checkpoint group, as above)
    /ensemble/members/<k>/snapshots/<epoch> its last K epoch checkpoints (checkpoint groups)
    /ensemble/members/<k>/history/<metric>  (E,) its per-epoch metrics (as history/epoch)

Writes are atomic: the whole file is built in memory, then written with
:func:`babysit.atomic.write_bytes` (a temporary file in the same directory,
renamed over the target), so a reader (or a crash) never sees half a log, and
a full or read-only disk is one clear OSError naming the log, raised by plain
file I/O rather than from inside HDF5's own writer.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from babysit.atomic import make_parents, write_bytes
from babysit.errors import BabysitError
from babysit.log_checks import (DamagedLog, attributes, check_attribute, check_structure,
                                checked_attrs, decode, equal_lengths, group_at, leaves,
                                numbers, numbers_flat, numbers_tree, text)
from babysit.run_log_schema import CHECKPOINT_ATTRS, RUN_ATTRS, checked_comparison, checked_result, read_history

FORMAT_ATTR = "babysit_format"
CHECKPOINT_KINDS = ("last", "best", "average")


class StoreError(BabysitError):
    """A log that is missing, unreadable, corrupt, or not a babysit log."""


# ---------------------------------------------------------------------------
# generic helpers (shared by every kind of log)


def write_hdf5(path, fill: Callable) -> Path:
    """Create ``path`` by calling ``fill(h5file)`` on an in-memory file, then writing it atomically.

    The target is either the old file or the complete new one (see
    :mod:`babysit.atomic`); missing parent directories are created. A target
    that is not a regular file (``/dev/null``) is refused: a log must be a
    file babysit can read back. Disk errors are :class:`babysit.atomic.WriteError`.
    """
    import h5py

    path = Path(path)
    make_parents(path)
    image = io.BytesIO()
    with h5py.File(image, "w") as handle:
        fill(handle)
    write_bytes(path, image.getbuffer(), stream_ok=False)
    return path


def write_tree(group, tree: dict) -> None:
    """Write a nested dict of arrays as groups/datasets (``None`` values are skipped)."""
    for key, value in tree.items():
        if value is None:
            continue
        if isinstance(value, dict):
            write_tree(group.require_group(str(key)), value)
        else:
            group.create_dataset(str(key), data=np.asarray(value))


def write_flat(group, state: dict) -> None:
    """Write ``{"t": 3, "0.W/m": array}`` (keys may contain '/': they become subgroups)."""
    for key, value in state.items():
        group.create_dataset(str(key), data=np.asarray(value))


def write_attrs(group, attrs: dict) -> None:
    """Every attribute that is not None onto an HDF5 group."""
    for key, value in attrs.items():
        if value is not None:
            group.attrs[key] = value


def decode_attr(value, where: str = "an attribute"):
    """h5py attribute -> plain Python (bytes -> str, numpy scalars -> Python); DamagedLog
    for bytes that are not UTF-8."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return decode(value, where)


def open_log(path):
    """Open a babysit log read-only; returns ``(h5py.File, kind)``. Raises StoreError.

    Only the attribute naming the kind is read here (checked to be one string
    first); the rest of the file is checked by :func:`read_log`.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise StoreError(f"log file {str(path)!r} does not exist")
    if path.is_dir():
        raise StoreError(f"{str(path)!r} is a directory, not a log file")
    if not path.is_file():   # a FIFO or a device: HDF5 would wait on it forever, or read it endlessly
        raise StoreError(f"{str(path)!r} is not a regular file, so not a log file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{str(path)!r} is not a readable HDF5 file (corrupt or another format): "
                         f"{exc}") from None
    try:
        kind = _log_kind(handle)
    except Exception as exc:   # reading one attribute of an untrusted file: no user code runs here
        handle.close()
        detail = str(exc) if isinstance(exc, DamagedLog) else f"{type(exc).__name__}: {exc}"
        raise StoreError(f"{str(path)!r} is a damaged babysit log: {detail}") from None
    if kind is None:
        handle.close()
        raise StoreError(f"{str(path)!r} is an HDF5 file but not a babysit log "
                         f"(no {FORMAT_ATTR!r} attribute)")
    return handle, kind


def _log_kind(handle) -> str | None:
    """The kind a file names itself (``babysit_format``, or ``format="babysit-<kind>"`` as
    the search log once did); None when it names none. Each is checked to be one
    string before it is read; the rest of the file is checked by :func:`read_log`."""
    for name in (FORMAT_ATTR, "format"):
        if name in handle.attrs:
            check_attribute(handle, name, "/")
    if FORMAT_ATTR in handle.attrs:
        kind = decode_attr(handle.attrs[FORMAT_ATTR], f"attribute {FORMAT_ATTR!r}")
        if not isinstance(kind, str):
            raise DamagedLog(f"attribute {FORMAT_ATTR!r} must be text, got {kind!r}")
        return kind
    other = decode_attr(handle.attrs.get("format", ""), "attribute 'format'")
    if isinstance(other, str) and other.startswith("babysit-"):
        return other[len("babysit-"):]
    return None


# Readers by log kind: kind -> function(h5py.File, path) -> log object.
READERS: dict[str, Callable] = {}


def register_reader(kind: str, reader: Callable) -> None:
    """Make :func:`read_log` understand logs whose ``babysit_format`` is ``kind``."""
    READERS[kind] = reader


def read_log(path, kind_wanted: str | None = None, use: str = ""):
    """Read any babysit log (dispatch on its kind). Raises StoreError for bad files.

    ``kind_wanted``: refuse a log of another kind before reading it, saying what
    it is and what ``use`` (e.g. "train --resume") needs. The whole file is
    checked (:func:`babysit.log_checks.check_structure`: no links, scalar
    attributes, no dataset declaring more than it stores) before the reader
    reads any array.
    """
    handle, kind = open_log(path)
    where = str(path)
    try:
        if kind_wanted is not None and kind != kind_wanted:
            raise StoreError(f"{where!r} is a babysit {kind} log, not a {kind_wanted} log"
                             f"{': ' + use if use else ''}")
        reader = READERS.get(kind)
        if reader is None:
            raise StoreError(f"{where!r} is a babysit log of unknown kind {kind!r} "
                             f"(known: {', '.join(sorted(READERS))})")
        try:
            check_structure(handle, handle.id.get_filesize())
            return reader(handle, Path(path))
        except DamagedLog as exc:
            raise StoreError(f"{where!r} is a damaged babysit {kind} log: {exc}") from None
        except Exception as exc:
            # The backstop behind the checks above: reading parses untrusted bytes and runs
            # no user code, so whatever h5py, json or numpy raise on a file the checks did
            # not foresee means the same thing, a damaged log, never a traceback.
            raise StoreError(f"{where!r} is a damaged babysit {kind} log: "
                             f"{type(exc).__name__}: {exc}") from None
    finally:
        handle.close()


# ---------------------------------------------------------------------------
# run logs


@dataclass
class Checkpoint:
    """Model state at one point: parameters (by dotted name) and layer buffers.

    ``optimizer`` (a state_dict), ``average`` (ParameterAverage state) and
    ``attrs`` (epoch, iteration, rng states ...) are only filled for the resume
    checkpoint ``last``.
    """

    params: dict
    buffers: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    optimizer: dict | None = None
    average: dict | None = None

    def write(self, group) -> None:
        for name, value in self.params.items():
            group.create_dataset(name, data=np.asarray(value))
        if self.buffers:
            write_flat(group.create_group("buffers"), self.buffers)
        if self.optimizer is not None:
            write_flat(group.create_group("optimizer"), self.optimizer)
        if self.average is not None:
            write_flat(group.create_group("average"), self.average)
        for key, value in self.attrs.items():
            group.attrs[key] = value

    @classmethod
    def read(cls, group, where: str) -> "Checkpoint":
        """Numeric arrays only: parameters here, the rest in the groups buffers/, optimizer/
        and average/ (the model and the optimizer then check the shapes)."""
        import h5py

        def part(name):
            if name not in group:
                return None
            return numbers_flat(group_at(group, name, f"{where}/{name}"), f"{where}/{name}")

        parts = {name: part(name) for name in ("buffers", "optimizer", "average")}
        params = {name: numbers(item, f"{where}/{name}") for name, item in group.items()
                  if not isinstance(item, h5py.Group)}
        attrs = attributes(group, where)
        checked_attrs(attrs, CHECKPOINT_ATTRS, where)
        return cls(params=params, buffers=parts["buffers"] or {}, attrs=attrs,
                   optimizer=parts["optimizer"], average=parts["average"])


@dataclass
class EnsembleMember:
    """One model of an ensemble run: ``attrs`` (seed, status, accuracies), its ``final``
    checkpoint, ``snapshots`` ``{epoch: Checkpoint}`` (the last K epochs) and ``history``
    ``{metric: per-epoch array}``."""

    attrs: dict
    final: Checkpoint
    snapshots: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)

    def write(self, group) -> None:
        write_attrs(group, self.attrs)
        self.final.write(group.create_group("final"))
        snapshots = group.create_group("snapshots")
        for epoch, checkpoint in self.snapshots.items():
            checkpoint.write(snapshots.create_group(str(epoch)))
        write_tree(group.create_group("history"), self.history)

    @classmethod
    def read(cls, group, where: str) -> "EnsembleMember":
        snapshots = {}
        for epoch, item in group_at(group, "snapshots", f"{where}/snapshots").items():
            if not epoch.isdigit():
                raise DamagedLog(f"{where}/snapshots/{epoch} is not named by an epoch number")
            snapshots[int(epoch)] = Checkpoint.read(
                group_at(group["snapshots"], epoch, f"{where}/snapshots/{epoch}"), f"{where}/snapshots/{epoch}")
        history = numbers_tree(group_at(group, "history", f"{where}/history"), f"{where}/history")
        equal_lengths(leaves(history, f"{where}/history", 1), "epoch")
        return cls(attrs=attributes(group, where),
                   final=Checkpoint.read(group_at(group, "final", f"{where}/final"), f"{where}/final"),
                   snapshots=dict(sorted(snapshots.items())), history=history)


@dataclass
class Ensemble:
    """What ``train --ensemble`` adds to a run log: ``members`` (in order), ``attrs`` and
    ``comparison`` (the result's ``metrics["ensemble"]``, stored as JSON text)."""

    members: list
    attrs: dict = field(default_factory=dict)
    comparison: dict = field(default_factory=dict)

    def write(self, group) -> None:
        write_attrs(group, self.attrs)
        group.attrs["comparison"] = json.dumps(self.comparison, sort_keys=True)
        members = group.create_group("members")
        for index, member in enumerate(self.members):
            member.write(members.create_group(str(index)))

    @classmethod
    def read(cls, group) -> "Ensemble":
        attrs = attributes(group, "/ensemble")
        comparison = checked_comparison(attrs.pop("comparison", "{}"))
        members = group_at(group, "members", "/ensemble/members")
        if not all(key.isdigit() for key in members):
            raise DamagedLog(f"/ensemble/members holds {sorted(members)}: members are numbered")
        return cls(members=[EnsembleMember.read(group_at(members, key, f"/ensemble/members/{key}"),
                                                f"/ensemble/members/{key}")
                            for key in sorted(members, key=int)],
                   attrs=attrs, comparison=comparison)


@dataclass
class RunLog:
    """Everything ``babysit train`` records; :meth:`save` writes it atomically.

    ``history`` is a nested dict of 1-D arrays laid out as in the module docstring
    (``history["iteration"]["loss"]``, ``history["epoch"]["val_accuracy"]``,
    ``history["monitors"]["update_ratio"]["0.W"]``, ``history["layers"]["1.relu"]["dead"]``).
    ``result`` is the ``Result.to_dict()`` of the run (findings, metrics) or None;
    ``ensemble`` the :class:`Ensemble` of a ``train --ensemble`` run, else None.
    """

    recipe_yaml: str
    attrs: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    checkpoints: dict = field(default_factory=dict)
    result: dict | None = None
    path: Path | None = None
    ensemble: Ensemble | None = None

    kind = "run"

    @property
    def name(self) -> str:
        return str(self.attrs.get("name", ""))

    @property
    def status(self) -> str:
        return str(self.attrs.get("status", "unknown"))

    def epoch_table(self) -> dict:
        """Per-epoch metrics, ``{metric: 1-D array}`` (empty dict when no epoch finished)."""
        return dict(self.history.get("epoch", {}))

    def save(self, path) -> Path:
        from babysit import __version__

        def fill(handle):
            handle.attrs[FORMAT_ATTR] = self.kind
            handle.attrs["babysit_version"] = __version__
            handle.attrs["recipe"] = self.recipe_yaml
            for key, value in self.attrs.items():
                if value is not None:
                    handle.attrs[key] = value
            if self.result is not None:
                handle.attrs["result"] = json.dumps(self.result, sort_keys=True)
            write_tree(handle.create_group("history"), self.history)
            checkpoints = handle.create_group("checkpoints")
            for which, checkpoint in self.checkpoints.items():
                if checkpoint is not None:
                    checkpoint.write(checkpoints.create_group(which))
            if self.ensemble is not None:
                self.ensemble.write(handle.create_group("ensemble"))

        self.path = write_hdf5(path, fill)
        return self.path

    @classmethod
    def from_h5(cls, handle, path=None) -> "RunLog":
        """Read and check (after :func:`babysit.log_checks.check_structure`): a damaged
        part is a DamagedLog saying which, before anything uses the log."""
        attrs = attributes(handle, "/", skip=(FORMAT_ATTR,))
        if "recipe" not in attrs:
            raise DamagedLog("attribute 'recipe' (the resolved recipe) is missing")
        recipe_yaml = text(attrs, "recipe")
        del attrs["recipe"]
        result = attrs.pop("result", None)
        checked_attrs(attrs, RUN_ATTRS)
        checkpoints = {}
        if "checkpoints" in handle:
            for which in group_at(handle, "checkpoints", "/checkpoints"):
                where = f"/checkpoints/{which}"
                checkpoints[which] = Checkpoint.read(group_at(handle["checkpoints"], which, where), where)
        history = (read_history(group_at(handle, "history", "/history"), attrs)
                   if "history" in handle else {})
        return cls(
            recipe_yaml=recipe_yaml, attrs=attrs, history=history, checkpoints=checkpoints,
            result=checked_result(result) if result is not None else None,
            path=Path(path) if path is not None else None,
            ensemble=Ensemble.read(group_at(handle, "ensemble", "/ensemble")) if "ensemble" in handle else None,
        )


register_reader(RunLog.kind, RunLog.from_h5)


def read_run_log(path, use: str = "") -> RunLog:
    """Read a run log; StoreError when ``path`` is not one (``use`` says what needs it)."""
    return read_log(path, RunLog.kind, use)


def rng_state_json(state: dict) -> str:
    """A Generator's complete state (``rng.bit_generator.state``) as JSON text (its
    128-bit integers do not fit HDF5 ints)."""
    return json.dumps(state, sort_keys=True)


def rng_state_from_json(text: str, kind: type = np.random.PCG64) -> dict:
    """The state recorded by :func:`rng_state_json`, for ``rng.bit_generator.state = ...``
    of a generator whose bit generator is ``kind``.

    Checked by setting it on a fresh ``kind()``, so a damaged log fails here, with
    the reason, not later inside the loop: ValueError (also for text that is not
    JSON, nested too deeply, or the state of another kind of generator).
    """
    try:
        state = json.loads(text) if isinstance(text, (str, bytes)) else text
    except RecursionError:
        raise ValueError("the generator state is nested too deeply") from None
    if not isinstance(state, dict):
        raise ValueError(f"expected a generator state (a JSON object), got {type(state).__name__}")
    if state.get("bit_generator") != kind.__name__:
        raise ValueError(f"a state of bit generator {state.get('bit_generator')!r}, "
                         f"expected {kind.__name__!r}")
    try:
        kind().state = state
    except (KeyError, OverflowError, TypeError, ValueError) as exc:
        raise ValueError(f"incomplete generator state ({type(exc).__name__}: {exc})") from None
    return state


__all__ = ["StoreError", "RunLog", "Checkpoint", "Ensemble", "EnsembleMember", "write_hdf5", "read_log", "read_run_log",
           "register_reader", "open_log", "write_tree", "write_flat", "read_history",
           "rng_state_json", "rng_state_from_json", "FORMAT_ATTR", "CHECKPOINT_KINDS"]

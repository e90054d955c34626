"""`tg.save(state_dict, path)` / `tg.load(path)`: a state dict (a module's or an optimizer's) to and
from a `.npz` file, with no pickle anywhere: every value is a plain NumPy array in the archive, and
loading (np.load with allow_pickle=False) never runs code.

A state dict is a tree: dicts (str or int keys), lists and tuples, with leaves that are ndarrays
(any dtype but object; a Tensor is saved as its array), NumPy scalars, int, float, bool, str or
None. Each leaf is one array in the archive (scalars as 0-d arrays, a str as a unicode array, dtypes
kept exactly), named by its path from the top-level dict:

- the keys on the path joined by "/";
- a str key as it is, except that the characters % / : # [ ( are written %25 %2F %3A %23 %5B %28
  (so a module's "0.weight" or "1.running_mean" is stored under that very name, as np.savez would);
- an int key as "#<n>", a list item as "[<i>]", a tuple item as "(<i>)";
- then, for anything but an ndarray, ":" and the leaf's kind: ":int", ":float", ":bool", ":str",
  ":none", ":scalar" (a NumPy scalar, e.g. np.float32(1)); an empty container is a leaf ":{}",
  ":[]" or ":()".

An Adam's state dict is stored as "state/#0/m", "state/#0/t:int", "param_groups/[0]/lr:float",
"param_groups/[0]/betas/(1):float", "param_groups/[0]/params/[0]:int", ...; tg.load rebuilds the same
nested dicts, lists and tuples, with the same Python types, in the same order."""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from .tensor import Tensor

_ESCAPE = {c: f"%{ord(c):02X}" for c in "%/:#[("}  # "%" first: the escapes themselves are escaped
_SCALARS: dict[type, tuple[str, str]] = {bool: ("bool", "b"), int: ("int", "i"), float: ("float", "f"),
                                         str: ("str", "U")}  # Python type -> (kind, the array's dtype.kind)
_KINDS = {kind: (t, dk) for t, (kind, dk) in _SCALARS.items()}
_EMPTY: dict[str, type] = {"{}": dict, "[]": list, "()": tuple}
_SUPPORTED = "dicts (str or int keys), lists, tuples, ndarrays, Tensors, NumPy scalars, int, float, bool, str, None"


def _npz_path(path: Any, fn: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: path must be a str or a path, got {type(path).__name__}")
    p = Path(path)
    if p.suffix != ".npz":
        raise ValueError(f"{fn}: the file must be a .npz archive, and {str(p)!r} does not end in .npz "
                         f"(e.g. {str(p.with_suffix('.npz')) if p.name else 'model.npz'!r})")
    return p


def _where(path: tuple[Any, ...]) -> str:
    return "state_dict" + "".join(f"[{k!r}]" for k in path)


def _key(k: Any, path: tuple[Any, ...]) -> str:
    if isinstance(k, str):
        return "".join(_ESCAPE.get(c, c) for c in k)
    if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
        return f"#{int(k)}"
    raise TypeError(f"tg.save: {_where(path)} has the key {k!r} of type {type(k).__name__}; "
                    "keys must be str or int")


def _flatten(value: Any, path: tuple[Any, ...], name: str, out: dict[str, np.ndarray], open_: set[int]) -> None:
    """Add value's leaves to out, named by the scheme above; name is the path so far ("" at the top)."""
    def leaf(kind: str, array: np.ndarray) -> None:
        out[name + (f":{kind}" if kind else "")] = array

    sep = "/" if name else ""
    if isinstance(value, (dict, list, tuple)):
        if id(value) in open_:
            raise ValueError(f"tg.save: {_where(path)} contains itself")
        if not value:
            if not path:
                return  # an empty state dict: an archive with no arrays
            leaf({dict: "{}", list: "[]", tuple: "()"}[next(t for t in (dict, list, tuple) if isinstance(value, t))],
                 np.array(False))
            return
        open_.add(id(value))
        if isinstance(value, dict):
            items = [(k, _key(k, path)) for k in value]
            for k, part in items:
                _flatten(value[k], (*path, k), name + sep + part, out, open_)
        else:
            brackets = "[]" if isinstance(value, list) else "()"
            for i, v in enumerate(value):
                _flatten(v, (*path, i), f"{name}{sep}{brackets[0]}{i}{brackets[1]}", out, open_)
        open_.discard(id(value))
    elif isinstance(value, (Tensor, np.ndarray)):
        a = value._data if isinstance(value, Tensor) else value
        if a.dtype.hasobject:
            raise TypeError(f"tg.save: {_where(path)} is an array of dtype {a.dtype} (Python objects), "
                            "which cannot be stored without pickle; convert it to a numeric or str array")
        leaf("", a)
    elif isinstance(value, np.generic):
        if value.dtype.hasobject:
            raise TypeError(f"tg.save: {_where(path)} is a NumPy object scalar, which needs pickle")
        leaf("scalar", np.asarray(value))
    elif value is None:
        leaf("none", np.array(False))
    elif type(value) in _SCALARS:
        kind, dtype_kind = _SCALARS[type(value)]
        try:
            a = np.asarray(value)
        except OverflowError:
            a = np.asarray(None, dtype=object)
        if a.dtype.kind != dtype_kind:
            raise ValueError(f"tg.save: {_where(path)} = {value!r} does not fit in a 64-bit integer")
        leaf(kind, a)
    else:
        raise TypeError(f"tg.save: {_where(path)} is a {type(value).__name__}, which tg.save cannot store "
                        f"(supported: {_SUPPORTED})")


def save(state_dict: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write `state_dict` (e.g. model.state_dict() or opt.state_dict()) to the .npz file `path`,
    without pickle; the layout is in this module's docstring. Everything is checked before the
    file is written, and the file is replaced whole (a failed save leaves no partial file)."""
    p = _npz_path(path, "tg.save")
    if not isinstance(state_dict, dict):
        raise TypeError(f"tg.save: expected a state dict (a dict, e.g. model.state_dict()), "
                        f"got {type(state_dict).__name__}")
    arrays: dict[str, np.ndarray] = {}
    _flatten(state_dict, (), "", arrays, set())
    if not p.parent.is_dir():
        raise FileNotFoundError(f"tg.save: the folder {str(p.parent)!r} does not exist (create it first)")
    fd, tmp = tempfile.mkstemp(suffix=".npz.tmp", dir=p.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, a in arrays.items():  # what np.savez does, without its keyword names (file, allow_pickle)
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)
        os.replace(tmp, p)
    except BaseException:
        os.unlink(tmp)
        raise


class _Node:
    """A container being rebuilt: its type and its items by key (str or int)."""
    def __init__(self, kind: type):
        self.kind: type = kind
        self.items: dict[Any, Any] = {}


def _parse(part: str, fn: str, name: str) -> tuple[type, Any]:
    """One path component: (the container type it indexes, the key)."""
    try:
        if part.startswith("#"):
            return dict, int(part[1:])
        if part[:1] in "[(" and part:
            kind, close = (list, "]") if part[0] == "[" else (tuple, ")")
            if not part.endswith(close) or not part[1:-1].isdigit():
                raise ValueError
            return kind, int(part[1:-1])
    except ValueError:
        raise ValueError(f"{fn}: entry {name!r} has the malformed key {part!r}; "
                         "not a file written by tg.save") from None
    return dict, unquote(part, errors="strict")


def _build(node: _Node, fn: str, where: str) -> Any:
    values = {k: _build(v, fn, f"{where}/{k}") if isinstance(v, _Node) else v for k, v in node.items.items()}
    if node.kind is dict:
        return values
    if sorted(values) != list(range(len(values))):
        raise ValueError(f"{fn}: the {node.kind.__name__} at {where or '/'} has items {sorted(values)}, "
                         "not 0, 1, 2, ...; not a file written by tg.save")
    items = [values[i] for i in range(len(values))]
    return items if node.kind is list else tuple(items)


def _value(a: np.ndarray, kind: str, fn: str, name: str) -> Any:
    if kind == "":
        return a
    if kind in _EMPTY:
        return _EMPTY[kind]()
    if kind == "none":
        return None
    if kind == "scalar" and a.ndim == 0:
        return a[()]
    if kind in _KINDS and a.ndim == 0 and a.dtype.kind == _KINDS[kind][1]:
        return _KINDS[kind][0](a[()])
    raise ValueError(f"{fn}: entry {name!r} holds a {a.dtype} array of shape {a.shape}, which is not a "
                     f"{kind or 'value'}; not a file written by tg.save")


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The state dict tg.save wrote to `path`: the same nested dicts, lists and tuples, arrays of the
    same dtypes, the same Python numbers, strings, bools and None; pass it to load_state_dict. Loading
    never unpickles (allow_pickle=False): an archive holding an object array is an error naming it."""
    fn = "tg.load"
    p = _npz_path(path, fn)
    if not p.is_file():
        raise FileNotFoundError(f"{fn}: no such file {str(p)!r}")
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ValueError(f"{fn}: {str(p)!r} is not a .npz archive (a zip file of .npy arrays)")
    root = _Node(dict)
    with np.load(p, allow_pickle=False) as npz:
        for name in npz.files:
            try:
                a = npz[name]
            except ValueError as e:
                raise ValueError(f"{fn}: entry {name!r} of {str(p)!r} cannot be loaded without pickle ({e}); "
                                 "tg.load never unpickles, so object arrays are refused") from None
            except Exception as e:  # a damaged member, or one that is not a .npy array
                raise ValueError(f"{fn}: entry {name!r} of {str(p)!r} is not a readable .npy array ({e})") from None
            if not isinstance(a, np.ndarray):  # np.load hands a member that is not .npy back as raw bytes
                raise ValueError(f"{fn}: entry {name!r} of {str(p)!r} is not a .npy array; not a file written by "
                                 "tg.save")
            path_part, colon, kind = name.rpartition(":") if ":" in name else (name, "", "")
            if colon and kind not in _KINDS and kind not in _EMPTY and kind not in ("none", "scalar"):
                raise ValueError(f"{fn}: entry {name!r} has the unknown kind {kind!r}; not a file written by tg.save")
            parts = path_part.split("/")
            node = root
            for i, part in enumerate(parts):
                kind_of, key = _parse(part, fn, name)
                if node.kind is not kind_of and (node.items or node is root):
                    raise ValueError(f"{fn}: entry {name!r}: the container at {'/'.join(parts[:i]) or '/'} is "
                                     "indexed both as a dict and as a list or tuple; not a file written by tg.save")
                node.kind = kind_of
                if i == len(parts) - 1:
                    if key in node.items:
                        raise ValueError(f"{fn}: entry {name!r} repeats the path {path_part!r}")
                    node.items[key] = _value(a, kind, fn, name)
                else:
                    child = node.items.setdefault(key, _Node(dict))
                    if not isinstance(child, _Node):
                        raise ValueError(f"{fn}: entry {name!r} goes inside {'/'.join(parts[:i + 1])!r}, which is "
                                         "a value, not a container; not a file written by tg.save")
                    node = child
    return _build(root, fn, "")

"""tg.save / tg.load: state dicts of modules and optimizers to .npz and back, with no pickle: the same
nested structure, dtypes and Python types; training continued from a saved checkpoint follows the
original to the bit; bad paths, files and values are clear errors."""
import zipfile

import numpy as np
import pytest

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn.tensor import Tensor


def assert_identical(a, b, where="state"):
    """Same structure, same container and leaf types, arrays equal with the same dtype and shape."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert type(k) is type(next(x for x in b if x == k)), f"{where}: key type of {k!r}"
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def model(seed: int) -> nn.Module:
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(5, 8, rng=rng), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3, rng=rng))


OPTIMIZERS = {
    "SGD": lambda ps: tg.optim.SGD(ps, lr=0.1),  # no momentum: each parameter's state stays {}
    "SGD nesterov": lambda ps: tg.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "RMSprop": lambda ps: tg.optim.RMSprop(ps, lr=0.01),
    "Adam": lambda ps: tg.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99)),
    "AdamW": lambda ps: tg.optim.AdamW(ps, lr=0.01),
}


def train(m: nn.Module, opt: tg.optim.Optimizer, steps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = Tensor(rng.standard_normal((16, 5)).astype(np.float32))
        opt.zero_grad()
        F.cross_entropy(m(x), rng.integers(0, 3, 16)).backward()
        opt.step()


@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_a_checkpoint_continues_training_exactly_as_the_original(opt_name, tmp_path):
    m = model(0)
    opt = OPTIMIZERS[opt_name](m.parameters())
    train(m, opt, 3, seed=1)
    tg.save(m.state_dict(), tmp_path / "model.npz")
    tg.save(opt.state_dict(), str(tmp_path / "opt.npz"))

    fresh = model(7)  # other initial values: everything must come from the files
    fresh_opt = OPTIMIZERS[opt_name](fresh.parameters())
    loaded_model, loaded_opt = tg.load(tmp_path / "model.npz"), tg.load(str(tmp_path / "opt.npz"))
    assert_identical(loaded_model, m.state_dict())
    assert_identical(loaded_opt, opt.state_dict())
    fresh.load_state_dict(loaded_model)
    fresh_opt.load_state_dict(loaded_opt)

    train(m, opt, 3, seed=2)
    train(fresh, fresh_opt, 3, seed=2)
    assert_identical(fresh.state_dict(), m.state_dict())
    assert_identical(fresh_opt.state_dict(), opt.state_dict())
    assert fresh.state_dict()["1.num_batches_tracked"].dtype == np.int64


def test_names_in_the_archive_follow_the_documented_scheme(tmp_path):
    m = model(0)
    opt = tg.optim.Adam(m.parameters(), lr=0.01)
    train(m, opt, 1, seed=0)
    tg.save(m.state_dict(), tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:  # a module's names are its own, as np.savez's
        assert f.files == list(m.state_dict())
    tg.save(opt.state_dict(), tmp_path / "o.npz")
    with np.load(tmp_path / "o.npz", allow_pickle=False) as f:
        names = f.files
        assert {"state/#0/m", "state/#0/v", "state/#0/t:int", "param_groups/[0]/lr:float",
                "param_groups/[0]/betas/(0):float", "param_groups/[0]/params/[3]:int"} <= set(names)
        assert f["state/#0/t:int"].shape == () and f["state/#0/m"].dtype == np.float32
    with zipfile.ZipFile(tmp_path / "o.npz") as z:
        assert all(n.endswith(".npy") for n in z.namelist())


def test_every_supported_value_round_trips_with_its_type_and_dtype(tmp_path):
    sd = {
        "f16": np.arange(3, dtype=np.float16), "f32": np.float32([1e-40, np.inf, np.nan]), "i8": np.int8([-1, 2]),
        "u64": np.array([2**64 - 1], np.uint64), "bool arr": np.array([True, False]), "c": np.complex64([1 + 2j]),
        "big-endian": np.arange(2, dtype=">f8"), "strings": np.array(["a", "héllo"]), "0-d": np.array(2.5),
        "empty": np.zeros((0, 3), np.float32), "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "int": 3, "neg": -2**63, "float": 0.1, "true": True, "false": False, "none": None, "str": "lr / 2: 50%",
        "": "an empty key", "np scalar": np.float32(1.5), "np int": np.int64(7), "np bool": np.bool_(True),
        "tensor": tg.tensor([1.0, 2.0]),
        "nested": {0: {"m": np.ones(2)}, 1: {}, "x/y:z#[(%": [1, (2.0, "s"), [], (), {}], 2: [None]},
    }
    tg.save(sd, tmp_path / "all.npz")
    back = tg.load(tmp_path / "all.npz")
    expected = {**sd, "tensor": np.array([1.0, 2.0], np.float32)}
    assert_identical(back, expected)
    assert back["fortran"].flags.f_contiguous or np.array_equal(back["fortran"], sd["fortran"])
    assert back["big-endian"].dtype.byteorder in (">", "=") and back["big-endian"].dtype == np.dtype(">f8")
    assert tg.load(tmp_path / "all.npz").keys() == sd.keys()  # the order too


def test_an_empty_state_dict_round_trips(tmp_path):
    tg.save({}, tmp_path / "e.npz")
    assert tg.load(tmp_path / "e.npz") == {}


def test_saving_replaces_the_file_whole_and_a_failed_save_writes_nothing(tmp_path, monkeypatch):
    p = tmp_path / "m.npz"
    tg.save({"a": np.ones(2)}, p)
    with pytest.raises(TypeError):
        tg.save({"b": np.ones(2), "bad": {1, 2}}, p)
    assert_identical(tg.load(p), {"a": np.ones(2)})
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.npz"]

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np.lib.format, "write_array", disk_full)  # the write itself fails half-way
    with pytest.raises(OSError, match="No space left"):
        tg.save({"c": np.ones(2)}, p)
    monkeypatch.undo()
    assert_identical(tg.load(p), {"a": np.ones(2)})
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.npz"]  # no temporary file left behind


@pytest.mark.parametrize("path", ["model.pt", "model", "model.npy", "model.npz.bak"])
def test_a_path_that_is_not_npz_is_a_clear_error(path, tmp_path):
    for call in (lambda: tg.save({"a": np.ones(1)}, tmp_path / path), lambda: tg.load(tmp_path / path)):
        with pytest.raises(ValueError, match=r"must be a \.npz archive.*does not end in \.npz"):
            call()
    assert not list(tmp_path.iterdir())  # np.savez would have written model.pt.npz


def test_bad_paths_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="path must be a str or a path, got int"):
        tg.save({}, 3)
    with pytest.raises(FileNotFoundError, match="no such file"):
        tg.load(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tg.save({}, tmp_path / "no" / "such" / "dir.npz")


def test_a_file_with_an_object_array_is_refused_without_unpickling(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, weight=np.ones(2), payload=np.array([{"a": 1}, None], dtype=object))  # np.savez pickles it
    with pytest.raises(ValueError, match="entry 'payload'.*cannot be loaded without pickle.*never unpickles"):
        tg.load(p)


@pytest.mark.parametrize("content", [b"hello, not a zip", b"\x80\x04\x95 pickled", b"\x93NUMPY\x01\x00"])
def test_a_file_that_is_not_an_npz_archive_is_a_clear_error(content, tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(content)
    with pytest.raises(ValueError, match="is not a .npz archive"):
        tg.load(p)


def test_a_plain_npz_of_arrays_loads_as_a_name_to_array_dict(tmp_path):
    m = model(0)
    np.savez(tmp_path / "plain.npz", **m.state_dict())
    fresh = model(1)
    fresh.load_state_dict(tg.load(tmp_path / "plain.npz"))
    assert_identical(fresh.state_dict(), m.state_dict())


@pytest.mark.parametrize("names, words", [
    (["a:float32"], "unknown kind 'float32'"),
    (["a/[1]:int"], "has items [1], not 0, 1, 2"),
    (["a/[0]:int", "a/x:int"], "indexed both as a dict and as a list"),
    (["a:int", "a/b:int"], "which is a value, not a container"),
    (["#x:int"], "malformed key '#x'"),
    (["a:int", "a:bool"], "repeats the path"),
])
def test_a_malformed_archive_is_a_clear_error(names, words, tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, **{n: np.array(True if n.endswith("bool") else 1) for n in names})
    with pytest.raises(ValueError, match=r"(?s)" + words.replace("[", r"\[").replace("]", r"\]")):
        tg.load(p)


def test_a_leaf_whose_array_does_not_match_its_kind_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, **{"lr:float": np.ones(3)})
    with pytest.raises(ValueError, match="float64 array of shape \\(3,\\), which is not a float"):
        tg.load(p)


class Thing:
    pass


@pytest.mark.parametrize("sd, exc, words", [
    ({"a": {1, 2}}, TypeError, "state_dict['a'] is a set, which tg.save cannot store (supported:"),
    ({"a": [Thing()]}, TypeError, "state_dict['a'][0] is a Thing"),
    ({"a": np.array([1, "x", None], dtype=object)}, TypeError, "dtype object (Python objects)"),
    ({"a": {2.5: np.ones(1)}}, TypeError, "state_dict['a'] has the key 2.5 of type float; keys must be str or int"),
    ({("a", 1): 1}, TypeError, "has the key ('a', 1) of type tuple"),
    ({"a": 2**70}, ValueError, "does not fit in a 64-bit integer"),
    ({"a": lambda: 0}, TypeError, "is a function"),
])
def test_unsupported_values_are_clear_errors_that_write_nothing(sd, exc, words, tmp_path):
    with pytest.raises(exc) as info:
        tg.save(sd, tmp_path / "x.npz")
    assert words in str(info.value)
    assert not list(tmp_path.iterdir())


def test_a_state_dict_that_contains_itself_or_is_not_a_dict_is_a_clear_error(tmp_path):
    loop: dict = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(ValueError, match=r"state_dict\['a'\]\[0\] contains itself"):
        tg.save(loop, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="expected a state dict .* got list"):
        tg.save([np.ones(1)], tmp_path / "x.npz")


def test_a_member_that_is_not_an_array_is_refused(tmp_path):
    """np.load hands a zip member that is not .npy back as raw bytes; tg.load refuses it."""
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("w", b"hello world")
    with pytest.raises(ValueError, match="not a .npy array"):
        tg.load(path)

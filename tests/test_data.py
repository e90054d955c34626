"""tinygrad_bn.data: mini-batches (every example once per epoch, seeded shuffles, x and y aligned,
drop_last, bad arguments), the digits split (shapes, labels, dtype, seeded and disjoint; skipped
without scikit-learn) and input standardization (docs/course.md section 1: train statistics, applied to test)."""
import sys

import numpy as np
import pytest

from tinygrad_bn.data import load_digits, minibatches, standardize


def toy(n=23, d=3):
    """x row i is (i, i + 0.5, ...) and y[i] = i, so any batch can be traced back to its examples."""
    x = np.arange(n, dtype=np.float64)[:, None] + np.arange(d) * 0.5
    return x, np.arange(n)


# ------------------------------------------------------------------------------------ minibatches

@pytest.mark.parametrize("n, bs", [(23, 5), (20, 5), (7, 1), (5, 8), (1, 1)])
def test_every_example_once_per_epoch_in_order_without_rng(n, bs):
    x, y = toy(n)
    batches = list(minibatches(x, y, bs))
    assert [len(b[1]) for b in batches] == [bs] * (n // bs) + ([n % bs] if n % bs else [])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), np.arange(n))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb, x[yb])


def test_shuffled_epoch_is_a_permutation_with_x_and_y_aligned():
    x, y = toy(103, 4)
    rng = np.random.default_rng(0)
    orders = []
    for _ in range(3):  # three epochs from one generator
        batches = list(minibatches(x, y, 10, rng=rng))
        assert [len(b[1]) for b in batches] == [10] * 10 + [3]
        seen = np.concatenate([b[1] for b in batches])
        np.testing.assert_array_equal(np.sort(seen), np.arange(103))
        for xb, yb in batches:
            assert xb.shape == (len(yb), 4)
            np.testing.assert_array_equal(xb, x[yb])
        orders.append(seen)
    assert not np.array_equal(orders[0], np.arange(103))  # shuffled
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])  # new each epoch


def test_shuffling_is_reproducible_from_the_seed():
    x, y = toy(50)

    def epochs(seed, k=2):
        rng = np.random.default_rng(seed)
        return [np.concatenate([b for _, b in minibatches(x, y, 7, rng=rng)]) for _ in range(k)]

    for a, b in zip(epochs(42), epochs(42)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(epochs(42)[0], epochs(43)[0])


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n, bs", [(23, 5), (20, 5), (4, 8)])
def test_drop_last_keeps_only_full_batches(n, bs, shuffle):
    x, y = toy(n)
    batches = list(minibatches(x, y, bs, rng=np.random.default_rng(1) if shuffle else None, drop_last=True))
    assert len(batches) == n // bs and all(len(b) == bs and len(a) == bs for a, b in batches)
    seen = np.concatenate([b for _, b in batches]) if batches else np.array([], int)
    assert len(set(seen.tolist())) == len(seen) == (n // bs) * bs  # no example twice
    for xb, yb in batches:
        np.testing.assert_array_equal(xb, x[yb])


def test_labels_of_any_shape_and_dtype_stay_aligned():
    x, idx = toy(12)
    one_hot = np.eye(12, dtype=np.float32)[idx]
    for xb, yb in minibatches(x, one_hot, 5, rng=np.random.default_rng(2)):
        assert yb.dtype == np.float32 and yb.shape[1] == 12
        np.testing.assert_array_equal(xb, x[yb.argmax(axis=1)])


@pytest.mark.parametrize("nx, ny, bs, pattern", [(10, 9, 2, r"x has 10 examples, y has 9"),
                                                 (10, 10, 0, r"batch_size must be >= 1, got 0"),
                                                 (10, 10, -3, r"batch_size must be >= 1, got -3")])
def test_bad_arguments_are_value_errors(nx, ny, bs, pattern):
    """Raised on first use (minibatches is a generator)."""
    with pytest.raises(ValueError, match=pattern):
        list(minibatches(np.zeros((nx, 2)), np.zeros(ny), bs))


# ----------------------------------------------------------------------------------------- digits

@pytest.fixture
def sklearn_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    return bunch.data, bunch.target


def rows_sorted(x, y):
    """The (features, label) rows as a sorted list of tuples: a multiset of examples."""
    return sorted(map(tuple, np.column_stack([x, y]).tolist()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_digits_shapes_labels_and_dtype(dtype, sklearn_digits):
    s = load_digits(dtype=dtype)
    n_train, n_test = len(s.y_train), len(s.y_test)
    assert n_train + n_test == 1797
    assert abs(n_test - 0.2 * 1797) < 1
    assert s.x_train.shape == (n_train, 64) and s.x_test.shape == (n_test, 64)
    assert s.x_train.dtype == dtype and s.x_test.dtype == dtype
    assert s.y_train.dtype == np.int64 and s.y_test.dtype == np.int64
    assert set(np.unique(s.y_train)) == set(range(10)) and set(np.unique(s.y_test)) == set(range(10))
    for x in (s.x_train, s.x_test):  # raw pixel intensities
        assert x.min() == 0 and x.max() == 16 and np.array_equal(x, np.round(x))
    (x_train, y_train, x_test, y_test) = s  # a named tuple
    assert x_train is s.x_train and y_test is s.y_test


def test_digits_split_is_a_partition_of_the_data_set(sklearn_digits):
    """Train and test together are exactly sklearn's 1797 examples, each once, labels attached:
    so the split is disjoint and loses nothing."""
    x, y = sklearn_digits
    s = load_digits(test_fraction=0.25, seed=3, dtype=np.float64)
    assert abs(len(s.y_test) - 0.25 * 1797) < 1
    together = rows_sorted(np.concatenate([s.x_train, s.x_test]), np.concatenate([s.y_train, s.y_test]))
    assert together == rows_sorted(x, y)
    assert len(set(map(tuple, x.tolist()))) == 1797  # no image repeats, so rows identify examples
    assert not set(rows_sorted(s.x_train, s.y_train)) & set(rows_sorted(s.x_test, s.y_test))


def test_digits_split_is_deterministic_by_seed(sklearn_digits):
    a, b, c = load_digits(seed=7), load_digits(seed=7), load_digits(seed=8)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.y_train, c.y_train)
    assert rows_sorted(a.x_test, a.y_test) != rows_sorted(c.x_test, c.y_test)


def test_digits_without_sklearn_is_a_helpful_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # `import` of a None entry raises ImportError
    with pytest.raises(ImportError, match=r"scikit-learn.*pip install"):
        load_digits()


# ------------------------------------------------------------------------------------- standardize

def test_standardize_gives_train_zero_mean_unit_std_and_applies_train_statistics(rng):
    """Features on wildly different scales and offsets: after standardizing, each training column has
    mean 0 and (biased) standard deviation 1; the test set is shifted and scaled by the TRAINING mean
    and standard deviation (its own would give other values: it is shifted and twice as wide)."""
    scale = 10.0 ** rng.uniform(-1, 4, 6)
    shift = scale * rng.uniform(-50, 50, 6)
    x_train = rng.standard_normal((200, 6)) * scale + shift
    x_test = rng.standard_normal((50, 6)) * scale * 2 + shift + scale
    a, b = standardize(x_train, x_test)
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-13)
    np.testing.assert_allclose(a.std(axis=0), 1, rtol=1e-7)  # eps=1e-8 added to the std: tiny compared to it
    mu, sigma = x_train.mean(axis=0), x_train.std(axis=0)
    np.testing.assert_allclose(b, (x_test - mu) / sigma, rtol=1e-6, atol=1e-12)
    assert a.dtype == b.dtype == np.float64
    assert len(standardize(x_train)) == 1 and len(standardize(x_train, x_test, x_test[:3])) == 3
    assert not np.shares_memory(a, x_train)
    np.testing.assert_array_equal(standardize(x_train, x_test)[1], b)


def test_standardize_keeps_float32_and_constant_columns_stay_finite():
    x = np.array([[0.0, 1.0, 5.0], [0.0, 3.0, 5.0], [0.0, 5.0, 5.0]], np.float32)  # columns 0, 2 constant
    (a,) = standardize(x)
    assert a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a[:, [0, 2]], 0)
    np.testing.assert_allclose(a[:, 1], np.array([-1, 0, 1]) * np.sqrt(1.5), rtol=1e-6)


def test_standardized_digits(sklearn_digits):
    s = load_digits()
    a, b = standardize(s.x_train, s.x_test)
    live = s.x_train.std(axis=0) > 0  # some border pixels are always 0
    assert 0 < (~live).sum() < 64
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(axis=0)[live], 1, rtol=1e-4)
    assert np.isfinite(b).all() and b.dtype == np.float32

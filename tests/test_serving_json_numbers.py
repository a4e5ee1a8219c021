"""The compiled scanner of numeric JSON arrays (`serving/_json_numbers.c`).

Whatever it answers must be what a JSON parser and np.array make of the
same text, bit for bit; where it is unsure it leaves the text out, and the
server's usual path answers. Texts are made at random (numbers written many
ways, then cut and spliced) and checked against orjson + np.array.
"""

import importlib.util
import json
import random
import shutil
import struct
import sysconfig
from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np
import orjson
import pytest

from keras_mtl.serving import json_numeric

numbers = json_numeric._json_numbers
MAX_RANK = json_numeric.MAX_RANK


def test_the_scanner_is_built_where_a_compiler_is():
    """`pip install -e .` builds it (setup.py); it is optional there, so a
    broken build would otherwise go unseen."""
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if not (shutil.which("cc") or shutil.which("gcc")) or not headers.exists():
        pytest.skip("no C compiler or Python headers: the simdjson fallback serves")
    spec = importlib.util.find_spec("keras_mtl.serving._json_numbers")
    assert spec is not None, "run `pip install -e .` again to build the C scanner"
    assert numbers is not None


needs_scanner = pytest.mark.skipif(numbers is None, reason="the C scanner is not built")


def expected(text):
    """What the server's usual path makes of `text` (one stretch): an array,
    or None when that is not one non-empty regular int64 / float64 array."""
    try:
        value = orjson.loads(text.strip(b" \t\n\r,"))
    except orjson.JSONDecodeError:
        return None
    if type(value) is not list:
        return None
    try:
        array = np.array(value)
    except (ValueError, OverflowError):
        return None
    if array.dtype not in (np.int64, np.float64) or array.size == 0:
        return None
    return array


def found(text):
    """The scanner's array for `text` (a whole stretch), or None."""
    arrays = numbers.find_arrays(text, 0, MAX_RANK)
    assert len(arrays) <= 1
    if not arrays:
        return None
    begin, end, values, shape, floats = arrays[0]
    assert text[begin:end].strip() == text.strip(b" \t\n\r,")
    return np.frombuffer(values, np.float64 if floats else np.int64).reshape(shape)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def written_numbers(rng, count):
    """Numbers as clients write them, and the cases that are hard to round."""
    getcontext().prec = 60
    out = []
    while len(out) < count:
        kind = rng.random()
        if kind < 0.2:  # float32 values as Python writes them
            out.append(
                repr(float(np.float32(rng.uniform(-1, 1) * 10 ** rng.randint(-8, 8))))
            )
        elif kind < 0.35:  # any double
            value = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
            if np.isfinite(value):
                out.append(repr(value))
        elif kind < 0.6:  # near the midpoint of two doubles, cut to 15..21 digits
            value = rng.uniform(1e-3, 1e3) * 10.0 ** rng.randint(-30, 30)
            middle = (Decimal(value) + Decimal(float(np.nextafter(value, np.inf)))) / 2
            out.append(format(middle, f".{rng.randint(14, 20)}e"))
        elif kind < 0.75:  # pixels, rounded
            out.append(str(round(rng.uniform(0, 255), rng.randint(0, 3))))
        elif kind < 0.9:  # digits and exponents of every length
            mantissa = rng.randint(0, 10 ** rng.randint(1, 22))
            fraction = (
                "" if rng.random() < 0.3 else "." + str(rng.randint(0, 10**6)).zfill(6)
            )
            exponent = (
                ""
                if rng.random() < 0.5
                else rng.choice("eE") + rng.choice(["", "+", "-"])
            )
            exponent += str(rng.randint(0, 40)) if exponent else ""
            if not fraction and not exponent and mantissa >= 2**63:
                fraction = ".5"  # an integer past int64 makes np.array objects
            sign = rng.choice(["", "-"])
            out.append(f"{sign}{mantissa}{fraction}{exponent}")
        else:
            out.append(
                rng.choice(
                    [
                        "0",
                        "-0",
                        "0.0",
                        "-0.0",
                        "9223372036854775807",
                        "-9223372036854775808",
                        "1e-400",
                        "4.9e-324",
                        "1.7976931348623157e308",
                        "2.2250738585072011e-308",
                    ]
                )
            )
    return out


@needs_scanner
@pytest.mark.parametrize("seed", range(3))
def test_floats_are_correctly_rounded_bit_for_bit(seed):
    rng = random.Random(seed)
    tokens = written_numbers(rng, 20000)
    text = ("[" + ",".join(tokens) + "]").encode()
    want = np.array([float(json.loads(t)) for t in tokens])  # "-0" is 0.0
    assert same_bits(expected(text), want)
    got = found(text)
    assert got is not None
    bad = np.nonzero(got.view(np.int64) != want.view(np.int64))[0]
    assert not len(bad), [tokens[i] for i in bad[:5]]
    # the same numbers in rows of 4, each row alone as the server meets them
    for start in range(0, 2000, 4):
        row = ("[" + ", ".join(tokens[start : start + 4]) + "]").encode()
        reference, got = expected(row), found(row)
        if got is not None:
            assert reference is not None and same_bits(got, reference), row


@needs_scanner
def test_integers_are_int64_and_overflow_is_left_out():
    ints = [0, -0, 1, -1, 2**63 - 1, -(2**63), 255, 10**18]
    got = found(json.dumps([ints, ints]).encode())
    assert got.dtype == np.int64 and got.tolist() == [ints, ints]
    assert found(b"[1, 9223372036854775808]") is None
    assert found(b"[1.5, 9223372036854775808]") is None  # np.array: object
    assert found(b"[1, 2, 3.5]").tolist() == [1.0, 2.0, 3.5]  # promoted, as np.array
    assert found(b"[-0, 1.5]").tobytes() == np.array([0.0, 1.5]).tobytes()
    assert found(b"[-0.0, 1]").tobytes() == np.array([-0.0, 1.0]).tobytes()
    assert found(b"[1e400]") is None and found(b"[1e-400]").tolist() == [0.0]


@needs_scanner
@pytest.mark.parametrize("seed", range(4))
def test_cut_and_spliced_texts_are_read_as_json_reads_them_or_left(seed):
    """Random edits of regular arrays: whatever the scanner reads is what a
    JSON parser reads, and the regular ones it must read."""
    rng = random.Random(seed)
    alphabet = "0123456789.eE+-[], \t\n\r"
    read = 0
    for _ in range(1500):
        shape = [rng.randint(1, 3) for _ in range(rng.randint(1, 4))]
        values = np.array(
            [
                float(t) if "." in t or "e" in t.lower() else int(t)
                for t in written_numbers(rng, int(np.prod(shape)))
            ],
            dtype=object,
        ).reshape(shape)
        text = json.dumps(values.tolist(), indent=rng.choice([None, 1]))
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            at = rng.randrange(len(text) + 1)
            edit = rng.random()
            if edit < 0.4:
                text = text[:at] + rng.choice(alphabet) + text[at:]
            elif edit < 0.8:
                text = text[:at] + text[at + rng.randint(1, 3) :]
            else:  # a piece of itself, elsewhere
                piece = text[rng.randrange(len(text)) :][: rng.randint(1, 8)]
                text = text[:at] + piece + text[at:]
        text = text.encode()
        reference, got = expected(text), found(text)
        if got is None:  # (an integer past int64 is left to np.array)
            assert reference is None or _past_int64(text), text
        else:
            read += 1
            assert reference is not None and same_bits(got, reference), text
    assert read > 300  # the test read many, not only refused


def _past_int64(text):
    flat = np.array(json.loads(text.strip(b" \t\n\r,")), dtype=object).ravel()
    return any(type(v) is int and not -(2**63) <= v < 2**63 for v in flat)


@needs_scanner
def test_stretches_of_a_body():
    image = json.dumps(np.arange(24).reshape(2, 3, 4).tolist())
    body = (
        '{"instances": [{"x": ' + image + ', "s": "[1, 2]"}, {"x": ' + image + "}],"
        ' "y": [[1, 2], [3]], "z": [1, 2] , "w": [[1.5]]}'
    ).encode()
    arrays = numbers.find_arrays(body, 20, MAX_RANK)
    assert [body[b:e] for b, e, *_ in arrays] == [image.encode()] * 2  # long ones
    arrays = numbers.find_arrays(body, 0, MAX_RANK)
    spans = [body[b:e] for b, e, *_ in arrays]
    # ragged [[1, 2], [3]] is left out; "[1, 2]" inside a string is read as a
    # stretch too (json_numeric puts such arrays back only where a JSON value
    # stood, and gives up otherwise)
    assert spans == [image.encode(), b"[1, 2]", image.encode(), b"[1, 2]", b"[[1.5]]"]
    assert numbers.find_arrays(bytearray(body), 0, MAX_RANK)[0][3] == (2, 3, 4)
    assert numbers.find_arrays(memoryview(body)[10:], 20, MAX_RANK)[0][0] == 11


@needs_scanner
def test_deep_or_long_texts_are_left_without_harm():
    deep = b"[" * 100_000 + b"1" + b"]" * 100_000
    assert numbers.find_arrays(deep, 0, MAX_RANK) == []
    assert numbers.find_arrays(b"[" * MAX_RANK + b"1" + b"]" * MAX_RANK, 0, MAX_RANK)
    assert numbers.find_arrays(b"[" * 34 + b"1" + b"]" * 34, 0, MAX_RANK) == []
    assert found(b"[1" + b"0" * 100_000 + b".5]") is None  # past float64
    for text in (
        b"[1" + b"0" * 300 + b".5]",
        b"[0." + b"0" * 400 + b"1]",
        b"[1." + b"5" * 5000 + b"]",
    ):
        assert same_bits(found(text), expected(text))
    assert numbers.find_arrays(b"", 0, MAX_RANK) == []
    assert numbers.find_arrays(b"[", 0, MAX_RANK) == []
    with pytest.raises(ValueError, match="max_rank"):
        numbers.find_arrays(b"[1]", 0, 0)

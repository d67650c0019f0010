#!/usr/bin/env python3
"""Writes the small seed inputs of Fuzz/corpus/ and the dictionaries of Fuzz/dict/.

Checkpoints are built the way torch.save lays them out (legacy pickles and zips of protocol-2
pickles, safetensors), without torch: stand-in classes under torch's names are pickled by the
standard library's pickler. Run from the repository root: python3 Fuzz/make-seeds.py
"""
import collections
import io
import json
import os
import pickle
import re
import struct
import sys
import types
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "Fuzz", "corpus")
DICT = os.path.join(ROOT, "Fuzz", "dict")

# --- stand-ins that pickle under torch's global names -------------------------------------
torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"] = torch
sys.modules["torch._utils"] = utils
torch._utils = utils

STORAGE_TYPES = {"F32": ("FloatStorage", "<f"), "F64": ("DoubleStorage", "<d"), "F16": ("HalfStorage", "<e"),
                 "I64": ("LongStorage", "<q"), "I32": ("IntStorage", "<i"), "U8": ("ByteStorage", "<B"),
                 "I8": ("CharStorage", "<b"), "BOOL": ("BoolStorage", "<?"), "I16": ("ShortStorage", "<h")}
for storage_name, _ in STORAGE_TYPES.values():
    cls = type(storage_name, (), {"__module__": "torch"})
    setattr(torch, storage_name, cls)


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


def _rebuild_parameter(*args):
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
_rebuild_parameter.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2
utils._rebuild_parameter = _rebuild_parameter


class Storage:
    def __init__(self, key, dtype, values):
        self.key, self.dtype, self.values = key, dtype, values

    def raw(self):
        fmt = STORAGE_TYPES[self.dtype][1]
        return b"".join(struct.pack(fmt, v) for v in self.values)


class Tensor:
    def __init__(self, storage, offset, shape, stride, parameter=False):
        self.storage, self.offset, self.shape, self.stride, self.parameter = storage, offset, shape, stride, parameter

    def __reduce_ex__(self, protocol):
        inner = (_rebuild_tensor_v2, (self.storage, self.offset, tuple(self.shape), tuple(self.stride), False,
                                      collections.OrderedDict()))
        if self.parameter:
            return (_rebuild_parameter, (_Reduced(inner), False, collections.OrderedDict()))
        return inner


class _Reduced:
    def __init__(self, reduced):
        self.reduced = reduced

    def __reduce_ex__(self, protocol):
        return self.reduced


def pickle_with_storages(obj, legacy, protocol=2):
    """torch.save's pickler: storages become persistent ids."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=protocol)
    seen = []

    def persistent_id(value):
        if isinstance(value, Storage):
            if value not in seen:
                seen.append(value)
            storage_type = getattr(torch, STORAGE_TYPES[value.dtype][0])
            if legacy:
                return ("storage", storage_type, value.key, "cpu", len(value.values), None)
            return ("storage", storage_type, value.key, "cpu", len(value.values))
        return None

    pickler.persistent_id = persistent_id
    pickler.dump(obj)
    return buffer.getvalue(), seen


def legacy_file(obj):
    out = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
    out += pickle.dumps(1001, protocol=2)
    out += pickle.dumps({"protocol_version": 1001, "little_endian": True,
                         "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    main, storages = pickle_with_storages(obj, legacy=True)
    out += main
    out += pickle.dumps([s.key for s in storages], protocol=2)
    for storage in storages:
        out += struct.pack("<q", len(storage.values)) + storage.raw()
    return out


def zip_file(obj, compression=zipfile.ZIP_STORED, archive="archive"):
    main, storages = pickle_with_storages(obj, legacy=False)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as z:
        z.writestr(f"{archive}/data.pkl", main)
        z.writestr(f"{archive}/byteorder", "little")
        for storage in storages:
            z.writestr(f"{archive}/data/{storage.key}", storage.raw())
        z.writestr(f"{archive}/version", "3\n")
    return buffer.getvalue()


def safetensors_file(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, values) in tensors.items():
        raw = b"".join(struct.pack(STORAGE_TYPES[dtype][1], v) for v in values) if dtype in STORAGE_TYPES else values
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write(target, name, content):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())


def state_dicts():
    """A few small state dicts in the shapes that matter: conv, BN, shared storage, views."""
    weights = Storage("0", "F32", [0.5 * i - 3 for i in range(18)])
    bn = Storage("1", "F32", [1.0, 0.25])
    tracked = Storage("2", "I64", [7])
    conv = collections.OrderedDict()
    conv["conv.weight"] = Tensor(weights, 0, [2, 1, 3, 3], [9, 9, 3, 1])
    conv["bn.weight"] = Tensor(bn, 0, [2], [1])
    conv["bn.bias"] = Tensor(bn, 1, [1], [1])
    conv["bn.num_batches_tracked"] = Tensor(tracked, 0, [], [])
    shared = Storage("s", "F32", [float(i) for i in range(6)])
    views = collections.OrderedDict()
    views["w"] = Tensor(shared, 0, [2, 3], [3, 1])
    views["t"] = Tensor(shared, 1, [2, 2], [1, 3])
    views["p"] = Tensor(shared, 0, [3], [1], parameter=True)
    mixed = collections.OrderedDict()
    for index, dtype in enumerate(["F64", "F16", "I32", "U8", "I8", "BOOL", "I16"]):
        values = [1, 0, 1] if dtype == "BOOL" else [1, -2, 3] if dtype in ("I32", "I8", "I16") else [1, 2, 250] if dtype == "U8" else [0.5, -1.5, 2.0]
        mixed[f"module.t{index}"] = Tensor(Storage(str(index), dtype, values), 0, [3], [1])
    wrapped = {"epoch": 7, "best_prec1": 91.5, "arch": "resnet20", "state_dict": conv}
    return {"conv": conv, "views": views, "mixed": mixed, "wrapped": wrapped}


def main():
    for name, obj in state_dicts().items():
        write("torch-legacy", f"{name}.th", legacy_file(obj))
        write("torch-zip", f"{name}.pt", zip_file(obj))
        main_pickle, _ = pickle_with_storages(obj, legacy=False)
        write("pickle", f"{name}.pkl", main_pickle)
    write("torch-zip", "deflated.pt", zip_file(state_dicts()["conv"], compression=zipfile.ZIP_DEFLATED, archive="resnet"))
    # Plain pickles of every protocol cover the opcodes torch does not write by default.
    plain = {"a": [1, -1, 255, 65535, 2**31, -2**31, 2**70, -2**70], "b": (1.5, None, True, False), "c": b"\x00\x01",
             "nested": [[[]], {}, ()], "text": "é\u2028", 3: "int key"}
    for protocol in range(2, 6):
        write("pickle", f"plain-p{protocol}.pkl", pickle.dumps(plain, protocol=protocol))
    shared = [1, 2]
    write("pickle", "memo.pkl", pickle.dumps([shared, shared, (shared,)], protocol=2))
    write("pickle", "legacy-header.pkl", pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2))

    write("safetensors", "conv.safetensors", safetensors_file(
        {"conv.weight": ("F32", [2, 1, 3, 3], [0.5 * i - 3 for i in range(18)]), "bn.bias": ("F32", [2], [0.0, -1.0]),
         "bn.num_batches_tracked": ("I64", [], [7])}, metadata={"format": "pt", "arch": "resnet20"}))
    write("safetensors", "types.safetensors", safetensors_file(
        {"h": ("F16", [3], [0.5, -1.5, 65504.0]), "b": ("BF16", [2], b"\x80\x3f\xc0\x7f"), "d": ("F64", [1, 1], [2.5]),
         "i": ("I32", [2], [-7, 7]), "u": ("U8", [4], [0, 1, 128, 255]), "z": ("F32", [0, 3], []),
         "q": ("BOOL", [2], [True, False]), "s": ("I16", [1], [-300])}))
    write("safetensors", "empty.safetensors", safetensors_file({}))
    # What `save ... int8=true` writes: integer codes, scales, zero points, precisions in metadata.
    precisions = {"c": {"kind": "uniform", "bits": 8, "scheme": "symmetric", "granularity": "channel",
                        "levels": [-127, 127], "scales": [0.5, 0.25], "zeroPoints": [0.0, 0.0]},
                  "d": {"kind": "ternary", "alpha": 0.125}}
    write("safetensors", "integer-layers.safetensors", safetensors_file(
        {"c.weight": ("I8", [2, 1, 1, 1], [1, -1]), "c.weight_scale": ("F32", [2], [0.5, 0.25]),
         "c.weight_zero_point": ("I8", [2], [0, 0]), "d.weight": ("I8", [1, 2], [1, -1]),
         "d.weight_scale": ("F32", [], [0.125]), "d.weight_zero_point": ("I8", [], [0])},
        metadata={"qsh_weight_precisions": json.dumps(precisions, sort_keys=True)}))

    # CIFAR-10 records: a label byte, then 3072 pixel bytes.
    write("cifar", "one.bin", bytes([3]) + bytes(range(256)) * 12)
    write("cifar", "two.bin", bytes([0]) + bytes(3072) + bytes([9]) + bytes([255]) * 3072)

    for path in sorted(os.listdir(os.path.join(ROOT, "examples"))):
        if path.endswith(".qs"):
            with open(os.path.join(ROOT, "examples", path), "rb") as f:
                write("qlang", path, f.read())
    write("qlang", "syntax.qs", 'let a = 1\nlet s = "x\\ty\\u{41}$a ${a}"\nfor b in 2..4, 8 { quantize weights bits=$b layer 1.. }\n'
                                "expect top1 >= 90 +- 0.5\nprint $a \\\n  -2.5e-3 true ..3 ; layers\n# comment\r\neval cifar10 samples=100\n")
    write_dictionaries()


def write_dictionaries():
    os.makedirs(DICT, exist_ok=True)
    words = set()
    for folder in ("Sources/Interpreter/Commands",):
        for path in os.listdir(os.path.join(ROOT, folder)):
            with open(os.path.join(ROOT, folder, path)) as f:
                text = f.read()
            words.update(re.findall(r'CommandSpec\(\s*\[([^\]]*)\]', text) and
                         [w for group in re.findall(r'CommandSpec\(\s*\[([^\]]*)\]', text) for w in re.findall(r'"([^"]+)"', group)])
            words.update(re.findall(r'OptionParameter\("([a-z0-9_-]+)"', text))
            words.update(re.findall(r'Positional\("[a-z]+", keyword: "([a-z]+)"', text))
            for group in re.findall(r'\.choice(?:OrInteger)?\(\[([^\]]*)\]', text):
                words.update(re.findall(r'"([^"]+)"', group))
    words.update(["let", "for", "in", "expect", "true", "false", "all", "resnet20", "cifar10", "top1", "top5"])
    syntax = ["=", "==", "!=", "<", "<=", ">", ">=", "+-", "..", ",", ";", "{", "}", "$", "${", "\\\n", "\"", "\\u{", "#", "\r\n",
              "1e-3", "-0.0", "9223372036854775807", "0..1000000000"]
    opcodes = {"PROTO": b"\x80\x02", "FRAME": b"\x95", "STOP": b".", "MARK": b"(", "EMPTY_DICT": b"}", "EMPTY_LIST": b"]",
               "EMPTY_TUPLE": b")", "NONE": b"N", "NEWTRUE": b"\x88", "NEWFALSE": b"\x89", "BININT": b"J", "BININT1": b"K",
               "BININT2": b"M", "LONG1": b"\x8a", "LONG4": b"\x8b", "BINFLOAT": b"G", "BINUNICODE": b"X",
               "SHORT_BINUNICODE": b"\x8c", "BINUNICODE8": b"\x8d", "SHORT_BINSTRING": b"U", "SHORT_BINBYTES": b"C",
               "BINBYTES": b"B", "BINBYTES8": b"\x8e", "BINPUT": b"q", "LONG_BINPUT": b"r", "MEMOIZE": b"\x94",
               "BINGET": b"h", "LONG_BINGET": b"j", "POP": b"0", "POP_MARK": b"1", "DUP": b"2", "TUPLE1": b"\x85",
               "TUPLE2": b"\x86", "TUPLE3": b"\x87", "TUPLE": b"t", "LIST": b"l", "DICT": b"d", "APPEND": b"a",
               "APPENDS": b"e", "SETITEM": b"s", "SETITEMS": b"u", "GLOBAL": b"c", "STACK_GLOBAL": b"\x93",
               "REDUCE": b"R", "NEWOBJ": b"\x81", "BINPERSID": b"Q", "BUILD": b"b"}
    strings = [b"storage", b"cpu", b"state_dict", b"little_endian", b"ctorch\nFloatStorage\n", b"ctorch\nLongStorage\n",
               b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch._utils\n_rebuild_parameter\n", b"ccollections\nOrderedDict\n",
               b"ctorch\nSize\n", b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", b"M\xe9\x03"]
    zip_words = [b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"data.pkl", b"archive/data/0",
                 b"byteorder", b"big"]
    safetensors_words = [b"dtype", b"shape", b"data_offsets", b"__metadata__", b"F32", b"F64", b"F16", b"BF16", b"I64",
                         b"I32", b"I16", b"I8", b"U8", b"BOOL", b"1e300", b"-1", b"4294967296", b"[0,0]", b"{}", b"[]",
                         b"qsh_weight_precisions", b".weight_scale", b".weight_zero_point", b"uniform", b"ternary"]

    def entry(value):
        return '"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else "\\x%02X" % b for b in value) + '"'

    def dump(name, title, items):
        with open(os.path.join(DICT, name), "w") as f:
            f.write(f"# {title} (Fuzz/make-seeds.py writes this).\n")
            for label, value in items:
                f.write(f"{label}={entry(value)}\n" if label else entry(value) + "\n")

    dump("qlang.dict", "Recipe keywords, command and option names, and punctuation",
         [(None, w.encode()) for w in sorted(words) + syntax])
    pickle_items = [(k, v) for k, v in opcodes.items()] + [(None, s) for s in strings]
    dump("pickle.dict", "Pickle opcodes and the globals and keys torch checkpoints use", pickle_items)
    dump("torch-zip.dict", "Zip signatures and torch.save archive names, with the pickle entries",
         [(None, w) for w in zip_words] + pickle_items)
    dump("safetensors.dict", "safetensors header keys and dtypes", [(None, w) for w in safetensors_words])


if __name__ == "__main__":
    main()

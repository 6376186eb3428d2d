"""lln from Python: compile a .lln model, load its weights, certify batches.

A thin ctypes layer over liblln (include/lln.h), numpy arrays in and out:

    import lln
    m = lln.compile("examples/mnist_fc.lln")
    m.load_weights("results/mnist/roll-C0.25.safetensors")
    x = lln.read_data("data/t10k-images-idx3-ubyte")[:100]
    c = m.certify(x, norms="2")
    print(c["pred"], c["eps_pred_l2"])

Radii are in raw input units; they are the numbers a certifier built by
`llnc build --certifier` prints for the same float32 inputs (docs/library.md).
Failures raise lln.Error with liblln's message.  This file is generated into
the build tree (build/python/lln.py) and installed by `cmake --install`,
each copy knowing where its liblln is; LLN_LIBRARY overrides that.
"""
import ctypes
import os
import tempfile

import numpy as np

__all__ = ["Error", "Model", "compile", "compile_text", "read_data", "read_labels"]

NORMS = ("l1", "l2", "linf")
_NORM_BIT = {"1": 1, "2": 2, "inf": 4, "l1": 1, "l2": 2, "linf": 4}


class Error(Exception):
    """A failure reported by liblln: a .lln diagnostic, a bad file, bad data."""


def _find_library():
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.environ.get("LLN_LIBRARY"), os.path.normpath(os.path.join(here, "@LLN_LIBRARY_REL@")), "@LLN_LIBRARY@"):
        if path and os.path.exists(path):
            return path
    raise ImportError("lln: cannot find liblln (looked next to %s and at @LLN_LIBRARY@; "
                      "set LLN_LIBRARY)" % here)


_lib = ctypes.CDLL(_find_library())
_c = ctypes
_P = _c.c_void_p
_fp = _c.POINTER(_c.c_float)
_ip = _c.POINTER(_c.c_int32)


class _Certificates(_c.Structure):
    _fields_ = [("pred", _ip), ("eps", _fp), ("eps_pred", _fp), ("bind", _ip),
                ("pattern", _c.POINTER(_c.c_uint64)), ("undecided", _ip)]


class _Evaluation(_c.Structure):
    _fields_ = [("n", _c.c_int64), ("accuracy", _c.c_double), ("loss", _c.c_double), ("ce", _c.c_double),
                ("eps_pct", (_c.c_double * 4) * 3), ("patterns", _c.c_int64), ("jacobians", _c.c_int64)]


def _sig(name, res, *args):
    f = getattr(_lib, name)
    f.restype = res
    f.argtypes = list(args)


_sig("lln_error", _c.c_char_p)
_sig("lln_compile", _P, _c.c_char_p)
_sig("lln_compile_text", _P, _c.c_char_p, _c.c_char_p)
_sig("lln_free", None, _P)
_sig("lln_name", _c.c_char_p, _P)
for _n in ("lln_n_inputs", "lln_n_outputs", "lln_n_hidden", "lln_n_layers", "lln_n_tensors"):
    _sig(_n, _c.c_int, _P)
_sig("lln_n_params", _c.c_int64, _P)
_sig("lln_layer_name", _c.c_char_p, _P, _c.c_int)
_sig("lln_layer_size", _c.c_int, _P, _c.c_int)
_sig("lln_tensor_name", _c.c_char_p, _P, _c.c_int)
_sig("lln_tensor_shape", _c.c_int, _P, _c.c_int, _c.POINTER(_c.c_int64))
_sig("lln_params", _fp, _P)
_sig("lln_load_weights", _c.c_int, _P, _c.c_char_p, _c.c_char_p)
_sig("lln_save_weights", _c.c_int, _P, _c.c_char_p)
_sig("lln_set_tensor", _c.c_int, _P, _c.c_char_p, _fp, _c.c_int64)
_sig("lln_certify", _c.c_int, _P, _fp, _c.c_int64, _c.c_int, _c.c_int, _c.POINTER(_Certificates))
_sig("lln_evaluate", _c.c_int, _P, _fp, _ip, _c.c_int64, _c.c_int, _c.c_int, _c.POINTER(_Evaluation))
_sig("lln_train", _c.c_int, _P, _c.c_int, _c.POINTER(_c.c_char_p))
_sig("lln_read_data", _c.c_int, _c.c_char_p, _c.c_int64, _c.c_int, _P)
_sig("lln_read_labels", _c.c_int, _c.c_char_p, _P)
_sig("lln_data_free", None, _P)


def _check(ok):
    if not ok:
        raise Error(_lib.lln_error().decode(errors="replace").rstrip("\n"))


def _enc(s):
    return os.fsencode(s) if s is not None else None


def _norm_bits(norms):
    if isinstance(norms, str):
        norms = norms.split(",")
    bits = 0
    for p in norms:
        p = str(p).strip()
        if p not in _NORM_BIT:
            raise ValueError("lln: norms are 1, 2 and inf, not %r" % p)
        bits |= _NORM_BIT[p]
    if not bits:
        raise ValueError("lln: no norm given")
    return bits


class Model:
    """A compiled .lln model with its parameters (see compile())."""

    def __init__(self, handle):
        self._h = handle

    def __del__(self):
        if getattr(self, "_h", None):
            _lib.lln_free(self._h)
            self._h = None

    name = property(lambda self: _lib.lln_name(self._h).decode())
    n_inputs = property(lambda self: _lib.lln_n_inputs(self._h))
    n_outputs = property(lambda self: _lib.lln_n_outputs(self._h))
    n_hidden = property(lambda self: _lib.lln_n_hidden(self._h))
    n_params = property(lambda self: _lib.lln_n_params(self._h))

    @property
    def layers(self):
        """The hidden layers in order, as (name, size)."""
        return [(_lib.lln_layer_name(self._h, i).decode(), _lib.lln_layer_size(self._h, i))
                for i in range(_lib.lln_n_layers(self._h))]

    @property
    def tensors(self):
        """Parameter tensors: {PyTorch state_dict name: shape}, in layout order."""
        out = {}
        shape = (_c.c_int64 * 4)()
        for i in range(_lib.lln_n_tensors(self._h)):
            rank = _lib.lln_tensor_shape(self._h, i, shape)
            out[_lib.lln_tensor_name(self._h, i).decode()] = tuple(shape[:rank])
        return out

    @property
    def params(self):
        """The parameter vector itself, as a numpy view (writes change the model)."""
        return np.ctypeslib.as_array(_lib.lln_params(self._h), shape=(self.n_params,))

    def load_weights(self, path, strip_prefix=None):
        """Weights from a safetensors file (PyTorch names, e.g. fc1.weight)."""
        _check(_lib.lln_load_weights(self._h, _enc(path), _enc(strip_prefix)) == 0)

    def save_weights(self, path):
        _check(_lib.lln_save_weights(self._h, _enc(path)) == 0)

    def load_state_dict(self, state_dict, strip_prefix=None, rename=None):
        """Weights from a PyTorch state_dict (torch tensors or numpy arrays),
        by name; every tensor of the model must be there with its shape, and
        names the model does not have are an error.  As llnc's --strip-prefix
        and --rename: strip_prefix is removed from every name first, then
        rename={"0": "fc1"} renames a leading module ("0.weight" becomes
        "fc1.weight"), for an nn.Sequential's numbered layers."""
        want = self.tensors
        got = {}
        for k, v in state_dict.items():
            if strip_prefix and k.startswith(strip_prefix):
                k = k[len(strip_prefix):]
            head, dot, rest = k.partition(".")
            if rename and head in rename:
                k = rename[head] + dot + rest
            if hasattr(v, "detach"):
                v = v.detach().cpu().numpy()
            got[k] = np.ascontiguousarray(v, dtype=np.float32)
        extra = sorted(set(got) - set(want))
        missing = [k for k in want if k not in got]
        if extra or missing:
            raise Error("state_dict does not match model '%s': missing %s, unexpected %s"
                        % (self.name, missing or "none", extra or "none"))
        for k, shape in want.items():
            if got[k].shape != shape:
                raise Error("tensor '%s' has shape %s, expected %s" % (k, got[k].shape, shape))
        for k in want:
            a = got[k]
            _check(_lib.lln_set_tensor(self._h, k.encode(), a.ctypes.data_as(_fp), a.size) == 0)

    def _batch(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 1 and x.size == self.n_inputs:
            x = x.reshape(1, -1)
        x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError("lln: model '%s' takes %d inputs an example; got an array of shape %s"
                             % (self.name, self.n_inputs, np.shape(x)))
        return x

    def binding(self, h):
        """Global hidden neuron h as (layer name, index in the layer); None for -1."""
        if h < 0:
            return None
        for name, size in self.layers:
            if h < size:
                return name, int(h)
            h -= size
        raise IndexError(h)

    def certify(self, x, norms="1,2,inf", threads=0, labels=None, eps=None, norm=None):
        """Certifies a batch x (n x n_inputs, or n x C x H x W).  Returns a dict
        of numpy arrays of n: pred, eps_l1/l2/linf (the activation region's
        margins; inf when no neuron binds), eps_pred_* (the radius within
        which the prediction is certified too), bind_* (global binding neuron,
        -1 none; see binding()), pattern (uint64 hash, as the certifier's)
        and undecided.  With labels: label and correct.  With eps (radii) and
        norm: robust (n x len(eps)): eps_pred_norm >= R, and with labels
        certified: robust and correct (docs/certifier.md)."""
        x = self._batch(x)
        bits = _norm_bits(norms)
        n = x.shape[0]
        pred = np.zeros(n, np.int32)
        e = np.zeros((n, 3), np.float32)
        ep = np.zeros((n, 3), np.float32)
        bind = np.zeros((n, 3), np.int32)
        pattern = np.zeros(n, np.uint64)
        und = np.zeros(n, np.int32)
        out = _Certificates(pred.ctypes.data_as(_ip), e.ctypes.data_as(_fp), ep.ctypes.data_as(_fp),
                            bind.ctypes.data_as(_ip), pattern.ctypes.data_as(_c.POINTER(_c.c_uint64)),
                            und.ctypes.data_as(_ip))
        _check(_lib.lln_certify(self._h, x.ctypes.data_as(_fp), n, bits, threads, _c.byref(out)) == 0)
        r = {"pred": pred, "pattern": pattern, "undecided": und}
        for p, name in enumerate(NORMS):
            if bits & (1 << p):
                r["eps_" + name] = e[:, p].copy()
                r["eps_pred_" + name] = ep[:, p].copy()
                r["bind_" + name] = bind[:, p].copy()
        if labels is not None:
            y = np.asarray(labels).reshape(-1)
            if y.shape[0] != n:
                raise ValueError("lln: %d labels for %d inputs" % (y.shape[0], n))
            r["label"] = y
            r["correct"] = pred == y
        if eps is not None:
            if norm is None:
                raise ValueError("lln: eps needs the norm of its radii: norm='1', '2' or 'inf'")
            p = {1: 0, 2: 1, 4: 2}[_norm_bits([norm])]
            if not bits & (1 << p):
                raise ValueError("lln: norm %s is not among norms" % norm)
            radii = np.atleast_1d(np.asarray(eps, np.float64))
            # the float radius against each R, in double, as the certifier
            r["robust"] = ep[:, p].astype(np.float64)[:, None] >= radii[None, :]
            if labels is not None:
                r["certified"] = r["robust"] & r["correct"][:, None]
        return r

    def evaluate(self, x, y, norms="2", threads=0):
        """As `llnc eval`: accuracy, loss and ce (the .lln file's objective),
        eps percentiles {'eps_l2': [P25, P50, P75, P100], ...}, patterns and
        jacobians (distinct activation patterns and logit Jacobians)."""
        x = self._batch(x)
        y = np.ascontiguousarray(y, dtype=np.int32).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ValueError("lln: %d labels for %d inputs" % (y.shape[0], x.shape[0]))
        bits = _norm_bits(norms)
        ev = _Evaluation()
        _check(_lib.lln_evaluate(self._h, x.ctypes.data_as(_fp), y.ctypes.data_as(_ip), x.shape[0], bits,
                                 threads, _c.byref(ev)) == 0)
        r = {"n": ev.n, "accuracy": ev.accuracy, "loss": ev.loss, "ce": ev.ce,
             "patterns": ev.patterns, "jacobians": ev.jacobians}
        for p, name in enumerate(NORMS):
            if bits & (1 << p):
                r["eps_" + name] = list(ev.eps_pct[p])
        return r

    def train(self, *flags, x=None, y=None):
        """Trains as `llnc train FILE.lln FLAGS...` (docs/training.md), with the
        .lln file's train block as defaults; e.g.
        m.train("--epochs", "3", "-o", "w.safetensors", x=x, y=y).  x and y
        (numpy) are the training data, written to temporary .npy files for
        --data; -o is required.  Afterwards the model holds the trained
        weights."""
        flags = [str(f) for f in flags]
        with tempfile.TemporaryDirectory(prefix="lln-") as tmp:
            if x is not None:
                xp, yp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
                np.save(xp, self._batch(x))
                np.save(yp, np.asarray(y, np.int64).reshape(-1))
                flags = ["--data", xp + "," + yp] + flags
            argv = (_c.c_char_p * (len(flags) + 1))(*[_enc(f) for f in flags], None)
            _check(_lib.lln_train(self._h, len(flags), argv) == 0)


def compile(path):
    """Compiles a .lln file in process (for this CPU) into a Model."""
    h = _lib.lln_compile(_enc(path))
    _check(h)
    return Model(h)


def compile_text(text, name="model.lln"):
    """Compiles .lln source text; `name` is its file name in messages."""
    h = _lib.lln_compile_text(_enc(name), text.encode())
    _check(h)
    return Model(h)


class _Data(_c.Structure):
    _fields_ = [("n", _c.c_int64), ("dim", _c.c_int64), ("x", _fp), ("y", _ip)]


def _take(d):
    """numpy copies of a lln_data's arrays, which liblln then frees."""
    x = np.ctypeslib.as_array(d.x, shape=(d.n, d.dim)).copy() if d.x else None
    y = np.ctypeslib.as_array(d.y, shape=(d.n,)).astype(np.int64) if d.y else None
    _lib.lln_data_free(_c.byref(d))
    return x, y


def read_data(path, dim=0, labels=False):
    """Examples from CSV, .npy or IDX (docs/formats.md; IDX bytes scaled to
    [0, 1]) as an n x dim float32 array (dim 0: the file's width).
    labels=True returns (x, y): y the labels of a CSV file holding them
    first (dim + 1 values a record; dim needed), else None."""
    d = _Data()
    _check(_lib.lln_read_data(_enc(path), dim, int(labels), _c.byref(d)) == 0)
    x, y = _take(d)
    return (x, y) if labels else x


def read_labels(path):
    """Labels from an IDX label file, .npy or CSV (one integer a line)."""
    d = _Data()
    _check(_lib.lln_read_labels(_enc(path), _c.byref(d)) == 0)
    return _take(d)[1]

"""A power-loss file layer for tests: records what the engine writes and forgets what it never synced.

LevelDB's fault_injection_test in Python. `FaultFS(root)` replaces the `os`, `shutil` and `open`
names inside the `logstore.*` modules (and `numpy.memmap.flush`, the msync of the mmap'd
indexes) with recording wrappers, for the duration of a `with` block only. Calls on paths outside
`root` pass straight through, so the same process can open a crash image with the real engine.

The model (what a power cut may leave on disk):
- File content. Each file ("identity": an inode, renumbered when it is re-created) has a durable
  content: what it held at its last `fsync` / `fdatasync` / msync (or at `install` for files that
  existed then). At a crash, every 4 KiB page where the live content differs from the durable one
  independently reaches the disk or not (so unsynced writes are lost, kept, or reordered), a few
  are torn at 512-byte sectors, and the file size is the durable size, the live size, or a page
  boundary in between; bytes past what was written read as zeros.
- Names. Creations, renames, unlinks, mkdirs and rmtrees form one ordered list of namespace
  operations. An operation is durable once its directory was fsynced after it; at a crash the
  durable ones plus a random prefix of the rest (a journaling file system commits metadata in
  order) are replayed over the names that existed at `install`.

Events: every mutating call under `root` (write, pwrite, ftruncate, truncate, create, rename,
unlink, mkdir, rmtree, fsync, msync) first calls `on_event(fs, kind, path)`. A test takes a crash
image there (`crash_image`) to simulate a power cut just before that call, and may raise
`Crash` (a BaseException, so the engine's `except Exception` cannot swallow it) to stop the
workload dead. After `crash()` every further mutating call under `root` raises `Crash` too.

Not modelled: writes through Python file objects (the engine uses them only to create or
truncate index files, which is recorded), and mmap pages reaching the disk without an msync
(treated like any unsynced page: compared by content at the crash).
"""

from __future__ import annotations

import os as _os
import random
import shutil as _shutil
import stat
import sys
import builtins
import gc
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

PAGE = 4096
SECTOR = 512


class Crash(BaseException):
    """Raised from inside the engine to stop it dead at a simulated power cut."""


@dataclass
class NsOp:
    kind: str  # create | mkdir | unlink | rename | rmtree
    path: str
    path2: str | None = None
    ident: int | None = None
    durable: bool = False


@dataclass
class ImageStats:
    files: int = 0
    pages_dirty: int = 0
    pages_lost: int = 0
    pages_torn: int = 0
    ns_ops_pending: int = 0
    ns_ops_lost: int = 0


@dataclass
class FSStats:
    events: int = 0
    syncs: int = 0
    images: int = 0
    pages_dirty: int = 0
    pages_lost: int = 0
    pages_torn: int = 0
    ns_ops_lost: int = 0
    by_kind: dict = field(default_factory=dict)


def _parent(path: str) -> str:
    return _os.path.dirname(path)


def _read_sparse(path: str) -> bytes:
    """A file's content, reading only its data extents (preallocated index files are mostly
    holes: this keeps an image of a log dir cheap)."""
    fd = _os.open(path, _os.O_RDONLY)
    try:
        size = _os.fstat(fd).st_size
        out = bytearray(size)
        pos = 0
        while pos < size:
            try:
                start = _os.lseek(fd, pos, _os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            try:
                end = _os.lseek(fd, start, _os.SEEK_HOLE)
            except OSError:
                end = size
            end = min(end, size)
            view = memoryview(out)[start:end]
            got = 0
            while got < end - start:
                n = _os.preadv(fd, [view[got:]], start + got)
                if n <= 0:
                    break
                got += n
            pos = end
        return bytes(out)
    finally:
        _os.close(fd)


def _write_sparse(path: str, data: bytes) -> None:
    """Write `data` to a new file, leaving all-zero pages as holes."""
    fd = _os.open(path, _os.O_WRONLY | _os.O_CREAT | _os.O_TRUNC, 0o644)
    try:
        n = len(data)
        if n >= 4 * PAGE:
            whole = n // PAGE * PAGE
            pages = np.frombuffer(data, dtype=np.uint8, count=whole).reshape(-1, PAGE)
            nonzero = np.flatnonzero(pages.any(axis=1))
            mv = memoryview(data)
            for i in nonzero.tolist():
                _os.pwrite(fd, mv[i * PAGE:(i + 1) * PAGE], i * PAGE)
            if whole < n:
                _os.pwrite(fd, mv[whole:], whole)
            _os.ftruncate(fd, n)
        else:
            _os.write(fd, data)
    finally:
        _os.close(fd)


class _OsProxy:
    """Stands in for the `os` module inside logstore modules."""

    def __init__(self, fs: "FaultFS"):
        self._fs = fs

    def __getattr__(self, name: str) -> Any:
        return getattr(_os, name)


class _ShutilProxy:
    def __init__(self, fs: "FaultFS"):
        self._fs = fs

    def __getattr__(self, name: str) -> Any:
        return getattr(_shutil, name)


class FaultFS:
    """Records file operations under `root` and produces power-loss images of it."""

    def __init__(self, root: str, on_event: Callable[["FaultFS", str, str], None] | None = None,
                 module_prefixes: tuple[str, ...] = ("logstore",)):
        self.root = _os.path.abspath(root)
        self.on_event = on_event
        self.module_prefixes = module_prefixes
        self.stats = FSStats()
        self.ops: list[NsOp] = []
        self._next_ident = 1
        self._ino_ident: dict[int, int] = {}
        self._durable: dict[int, bytes] = {}  # ident → content at its last sync
        self._dead: dict[int, bytes] = {}  # ident → live content when it was unlinked
        self._initial: dict[str, tuple[int, bool]] = {}  # path → (ident, is_dir) at install
        self._fds: dict[int, str] = {}  # watched fds → path at open
        self._patched: list[tuple[Any, str, Any, bool]] = []
        self._crashed = False
        self._in_event = False
        self.os = _OsProxy(self)
        self.shutil = _ShutilProxy(self)
        self._install_wrappers()

    # -- identity -------------------------------------------------------------------------
    def watched(self, path: Any) -> bool:
        if not isinstance(path, (str, bytes, _os.PathLike)):
            return False
        p = _os.path.abspath(_os.fsdecode(path))
        return p == self.root or p.startswith(self.root + "/")

    def _new_ident(self, ino: int) -> int:
        ident = self._next_ident
        self._next_ident += 1
        self._ino_ident[ino] = ident
        return ident

    def _ident_of_ino(self, ino: int) -> int:
        ident = self._ino_ident.get(ino)
        if ident is None:
            ident = self._new_ident(ino)
        return ident

    def _ident_of_path(self, path: str) -> int | None:
        try:
            return self._ident_of_ino(_os.lstat(path).st_ino)
        except FileNotFoundError:
            return None

    @staticmethod
    def _read_path(path: str) -> bytes:
        return _read_sparse(path)

    def _read_fd(self, fd: int) -> bytes:
        return _read_sparse(f"/proc/self/fd/{fd}")

    # -- install --------------------------------------------------------------------------
    def __enter__(self) -> "FaultFS":
        self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.uninstall()

    def install(self) -> None:
        """Snapshot the tree under root as durable, then patch the engine's modules."""
        for dirpath, dirnames, filenames in _os.walk(self.root):
            for d in dirnames:
                p = _os.path.join(dirpath, d)
                self._initial[p] = (self._ident_of_ino(_os.lstat(p).st_ino), True)
            for f in filenames:
                p = _os.path.join(dirpath, f)
                ident = self._ident_of_ino(_os.lstat(p).st_ino)
                self._initial[p] = (ident, False)
                self._durable[ident] = self._read_path(p)
        for name, mod in list(sys.modules.items()):
            if mod is None or not any(name == pre or name.startswith(pre + ".") for pre in self.module_prefixes):
                continue
            d = vars(mod)
            if d.get("os") is _os:
                self._patch(mod, "os", self.os)
            if d.get("shutil") is _shutil:
                self._patch(mod, "shutil", self.shutil)
            if "open" not in d:  # the module uses the builtin open (store.py defines its own)
                self._patch(mod, "open", self._open_builtin)
        self._patch(np.memmap, "flush", self._make_memmap_flush(np.memmap.flush))

    def _patch(self, obj: Any, name: str, value: Any) -> None:
        had = name in vars(obj)
        self._patched.append((obj, name, vars(obj).get(name), had))
        setattr(obj, name, value)

    def uninstall(self) -> None:
        for obj, name, old, had in reversed(self._patched):
            if had:
                setattr(obj, name, old)
            else:
                try:
                    delattr(obj, name)
                except AttributeError:
                    pass
        self._patched.clear()

    def abandon(self) -> None:
        """After a crash: release the dead engine's log dir lock and let go of its files.

        Only lock files are closed here. Every other descriptor belongs to an engine object that
        closes it when collected (file_slice.FdHandle); closing those too would close a number the
        next engine may have been given meanwhile. `gc.collect()` runs so that happens now."""
        for fd, path in list(self._fds.items()):
            if path.endswith("/.lock"):
                try:
                    _os.close(fd)
                except OSError:
                    pass
        self._fds.clear()
        gc.collect()

    # -- events ---------------------------------------------------------------------------
    def _event(self, kind: str, path: str) -> None:
        if self._crashed:
            raise Crash(f"after the crash: {kind} {path}")
        self.stats.events += 1
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        if self.on_event is not None and not self._in_event:
            self._in_event = True
            try:
                self.on_event(self, kind, path)
            finally:
                self._in_event = False

    def crash(self) -> None:
        """Stop the engine: this and every later mutating call under root raises Crash."""
        self._crashed = True
        raise Crash("simulated power cut")

    @property
    def crashed(self) -> bool:
        return self._crashed

    def _fd_path(self, fd: int) -> str | None:
        return self._fds.get(fd)

    # -- the wrappers ---------------------------------------------------------------------
    def _install_wrappers(self) -> None:
        fs = self
        P = self.os.__dict__
        S = self.shutil.__dict__

        def w_open(path, flags, mode=0o777, *, dir_fd=None):
            if dir_fd is not None or not fs.watched(path):
                return _os.open(path, flags, mode, dir_fd=dir_fd)
            path = _os.path.abspath(_os.fsdecode(path))
            creating = bool(flags & _os.O_CREAT) and not _os.path.lexists(path)
            if creating or flags & _os.O_TRUNC:
                fs._event("create" if creating else "truncate", path)
            fd = _os.open(path, flags, mode)
            fs._fds[fd] = path
            if creating:
                ident = fs._new_ident(_os.fstat(fd).st_ino)
                fs.ops.append(NsOp("create", path, ident=ident))
            return fd

        def w_close(fd):
            fs._fds.pop(fd, None)
            return _os.close(fd)

        def w_pwrite(fd, data, pos):
            p = fs._fd_path(fd)
            if p is not None:
                fs._event("pwrite", p)
            return _os.pwrite(fd, data, pos)

        def w_write(fd, data):
            p = fs._fd_path(fd)
            if p is not None:
                fs._event("write", p)
            return _os.write(fd, data)

        def w_ftruncate(fd, length):
            p = fs._fd_path(fd)
            if p is not None:
                fs._event("ftruncate", p)
            return _os.ftruncate(fd, length)

        def w_truncate(path, length):
            if isinstance(path, int):
                return w_ftruncate(path, length)
            if fs.watched(path):
                fs._event("truncate", _os.path.abspath(path))
            return _os.truncate(path, length)

        def make_sync(real):
            def w_sync(fd):
                p = fs._fd_path(fd)
                if p is None:
                    return real(fd)
                fs._event("fsync", p)
                real(fd)
                fs._synced_fd(fd)
            return w_sync

        def w_rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
            if src_dir_fd is not None or dst_dir_fd is not None or not fs.watched(dst):
                return _os.replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            src = _os.path.abspath(src)
            dst = _os.path.abspath(dst)
            fs._event("rename", dst)
            fs._bury(dst)
            _os.replace(src, dst)
            fs.ops.append(NsOp("rename", src, dst))

        def w_unlink(path, *, dir_fd=None):
            if dir_fd is not None or not fs.watched(path):
                return _os.unlink(path, dir_fd=dir_fd)
            path = _os.path.abspath(path)
            fs._event("unlink", path)
            fs._bury(path)
            _os.unlink(path)
            fs.ops.append(NsOp("unlink", path))

        def w_mkdir(path, mode=0o777, *, dir_fd=None):
            if dir_fd is not None or not fs.watched(path):
                return _os.mkdir(path, mode, dir_fd=dir_fd)
            path = _os.path.abspath(path)
            fs._event("mkdir", path)
            _os.mkdir(path, mode)
            fs.ops.append(NsOp("mkdir", path, ident=fs._new_ident(_os.lstat(path).st_ino)))

        def w_makedirs(name, mode=0o777, exist_ok=False):
            if not fs.watched(name):
                return _os.makedirs(name, mode, exist_ok)
            name = _os.path.abspath(name)
            missing = []
            p = name
            while not _os.path.exists(p):
                missing.append(p)
                p = _os.path.dirname(p)
            if not missing:
                if not exist_ok:
                    raise FileExistsError(17, "File exists", name)
                return
            for p in reversed(missing):
                w_mkdir(p, mode)

        def w_rmtree(path, ignore_errors=False, onerror=None, **kw):
            if not fs.watched(path):
                return _shutil.rmtree(path, ignore_errors, onerror, **kw)
            path = _os.path.abspath(path)
            if not _os.path.lexists(path):
                if ignore_errors:
                    return
                raise FileNotFoundError(2, "No such file or directory", path)
            fs._event("rmtree", path)
            for dirpath, _dirs, files in _os.walk(path):
                for f in files:
                    fs._bury(_os.path.join(dirpath, f))
            _shutil.rmtree(path, ignore_errors, onerror, **kw)
            fs.ops.append(NsOp("rmtree", path))

        P.update(open=w_open, close=w_close, pwrite=w_pwrite, write=w_write, ftruncate=w_ftruncate,
                 truncate=w_truncate, fsync=make_sync(_os.fsync), fdatasync=make_sync(_os.fdatasync),
                 replace=w_rename, rename=w_rename, unlink=w_unlink, remove=w_unlink, mkdir=w_mkdir,
                 makedirs=w_makedirs)
        S.update(rmtree=w_rmtree)

    def _open_builtin(self, file, mode="r", *args, **kw):
        if isinstance(file, int) or not self.watched(file) or not any(c in mode for c in "wax+"):
            return builtins.open(file, mode, *args, **kw)
        path = _os.path.abspath(_os.fsdecode(file))
        creating = not _os.path.lexists(path)
        if creating or "w" in mode:
            self._event("create" if creating else "truncate", path)
        f = builtins.open(path, mode, *args, **kw)
        if creating:
            ident = self._new_ident(_os.fstat(f.fileno()).st_ino)
            self.ops.append(NsOp("create", path, ident=ident))
        return f

    def _make_memmap_flush(self, real: Callable) -> Callable:
        fs = self

        def flush(mm: np.memmap) -> None:
            fn = getattr(mm, "filename", None)
            if fn is None or not fs.watched(fn) or getattr(mm, "mode", "r") == "r":
                return real(mm)
            fs._event("msync", fn)
            real(mm)
            try:
                st = _os.stat(fn)
            except FileNotFoundError:
                return
            fs.stats.syncs += 1
            fs._durable[fs._ident_of_ino(st.st_ino)] = fs._read_path(fn)

        return flush

    def _bury(self, path: str) -> None:
        """`path` is about to lose its name: remember its live content (a crash may bring it back)."""
        try:
            st = _os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISREG(st.st_mode):
            ident = self._ident_of_ino(st.st_ino)
            self._dead[ident] = self._read_path(path)
            if st.st_nlink <= 1:
                self._ino_ident.pop(st.st_ino, None)  # the inode number may be reused

    def _synced_fd(self, fd: int) -> None:
        self.stats.syncs += 1
        st = _os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            d = self._fds[fd]
            for op in self.ops:
                if not op.durable and (_parent(op.path) == d or (op.path2 and _parent(op.path2) == d)):
                    op.durable = True
        elif stat.S_ISREG(st.st_mode):
            self._durable[self._ident_of_ino(st.st_ino)] = self._read_fd(fd)

    # -- crash images ----------------------------------------------------------------------
    def _live_contents(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for dirpath, _dirs, files in _os.walk(self.root):
            for f in files:
                p = _os.path.join(dirpath, f)
                ino = _os.lstat(p).st_ino
                ident = self._ino_ident.get(ino)
                if ident is not None:
                    out[ident] = p
        return out

    def durable_names(self, rng: random.Random, *, worst: bool = False,
                      all_names: bool = False) -> tuple[dict[str, tuple[int, bool]], int, int]:
        """The names a crash leaves: (path → (ident, is_dir), pending ops, ops lost). `worst`:
        only the synced ones; `all_names`: every operation made it."""
        pending = [i for i, op in enumerate(self.ops) if not op.durable]
        r = rng.random()
        if all_names:
            k = len(self.ops)
        elif worst or r < 0.25:
            k = 0
        elif r < 0.5:
            k = len(self.ops)
        else:
            k = rng.randint(0, len(self.ops))
        ns = dict(self._initial)
        lost = 0
        for i, op in enumerate(self.ops):
            if not (op.durable or i < k):
                lost += 1
                continue
            if op.kind == "create":
                ns[op.path] = (op.ident, False)  # type: ignore[assignment]
            elif op.kind == "mkdir":
                ns[op.path] = (op.ident, True)  # type: ignore[assignment]
            elif op.kind == "unlink":
                ns.pop(op.path, None)
            elif op.kind == "rmtree":
                for p in [p for p in ns if p == op.path or p.startswith(op.path + "/")]:
                    del ns[p]
            elif op.kind == "rename":
                src, dst = op.path, op.path2
                if src not in ns:
                    continue
                moved = {p: v for p, v in ns.items() if p == src or p.startswith(src + "/")}
                for p in moved:
                    del ns[p]
                for p in [p for p in ns if p.startswith(dst + "/")]:  # type: ignore[operator]
                    del ns[p]
                for p, v in moved.items():
                    ns[dst + p[len(src):]] = v  # type: ignore[operator]
        # a name whose directory did not survive is gone
        alive: dict[str, tuple[int, bool]] = {}
        for p in sorted(ns, key=len):
            parent = _parent(p)
            if parent == self.root or (parent in alive and alive[parent][1]):
                alive[p] = ns[p]
        return alive, len(pending), lost

    def _mix(self, durable: bytes, live: bytes, rng: random.Random, st: ImageStats, worst: bool = False) -> bytes:
        if durable == live:
            return durable
        if worst:
            st.pages_dirty += 1
            st.pages_lost += 1
            return durable
        keep_new = rng.choice((0.0, 0.5, 0.9, 1.0)) if rng.random() < 0.8 else rng.random()
        lo, hi = sorted((len(durable), len(live)))
        r = rng.random()
        if lo == hi or r < 0.4:
            size = len(live)
        elif r < 0.7:
            size = len(durable)
        else:
            size = min(hi, max(lo, (rng.randint(lo, hi) // PAGE) * PAGE))
        # start from the durable bytes; only pages that differ from the live ones are in play
        out = bytearray(durable[:size].ljust(size, b"\0"))
        newer = live[:size].ljust(size, b"\0")
        whole = size // PAGE * PAGE
        if whole:
            a = np.frombuffer(out, dtype=np.uint8, count=whole).reshape(-1, PAGE)
            b = np.frombuffer(newer, dtype=np.uint8, count=whole).reshape(-1, PAGE)
            differing = [int(i) * PAGE for i in np.flatnonzero((a != b).any(axis=1))]
            del a, b
        else:
            differing = []
        if whole < size and out[whole:] != newer[whole:]:
            differing.append(whole)
        for start in differing:
            end = min(start + PAGE, size)
            d = bytes(out[start:end])
            n = newer[start:end]
            st.pages_dirty += 1
            if rng.random() < 0.1:
                st.pages_torn += 1
                for s in range(start, end, SECTOR):
                    e = min(s + SECTOR, end)
                    out[s:e] = (n if rng.random() < keep_new else d)[s - start:e - start]
            elif rng.random() < keep_new:
                out[start:end] = n
            else:
                st.pages_lost += 1
                out[start:end] = d
        return bytes(out)

    def crash_image(self, dest: str, rng: random.Random | None = None, *, worst: bool = False,
                    all_names: bool = False) -> ImageStats:
        """Write to `dest` (a new directory) what the disk under root could hold after a power cut
        now. Does not disturb the live files. `worst`: no unsynced page or name survives;
        `all_names` (with `worst`): every name operation survives, no unsynced page does."""
        rng = rng or random.Random(0)
        st = ImageStats()
        names, st.ns_ops_pending, st.ns_ops_lost = self.durable_names(rng, worst=worst, all_names=all_names)
        live = self._live_contents()
        _os.makedirs(dest)
        for p in sorted(names, key=len):
            ident, is_dir = names[p]
            out = _os.path.join(dest, _os.path.relpath(p, self.root))
            if is_dir:
                _os.mkdir(out)
                continue
            st.files += 1
            durable = self._durable.get(ident, b"")
            lp = live.get(ident)
            if lp is not None:
                now = self._read_path(lp)
            else:
                now = self._dead.get(ident, durable)
            _write_sparse(out, self._mix(durable, now, rng, st, worst))
        s = self.stats
        s.images += 1
        s.pages_dirty += st.pages_dirty
        s.pages_lost += st.pages_lost
        s.pages_torn += st.pages_torn
        s.ns_ops_lost += st.ns_ops_lost
        return st

"""Loaded at interpreter start-up by the torchrun tests (PYTHONPATH): when ULDL_WRITE_AUDIT names a
folder, every path this process opens for writing, creates, renames or replaces is appended to
``<folder>/rank<RANK>.log``, so a test can tell which rank wrote which files."""
import builtins
import os

_folder = os.environ.get("ULDL_WRITE_AUDIT")
if _folder:
    _log_path = os.path.join(_folder, f"rank{os.environ.get('RANK', 'none')}.log")
    _real_open, _real_os_open = builtins.open, os.open
    _real_replace, _real_rename = os.replace, os.rename
    _write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _record(path):
        try:
            text = os.fsdecode(path) if not isinstance(path, int) else None
        except TypeError:
            text = None
        if text is None:
            return
        fd = _real_os_open(_log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (os.path.abspath(text) + "\n").encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)

    def _open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            _record(file)
        return _real_open(file, mode, *args, **kwargs)

    def _os_open(path, flags, *args, **kwargs):
        if flags & _write_flags:
            _record(path)
        return _real_os_open(path, flags, *args, **kwargs)

    def _replace(src, dst, *args, **kwargs):
        _record(dst)
        return _real_replace(src, dst, *args, **kwargs)

    def _rename(src, dst, *args, **kwargs):
        _record(dst)
        return _real_rename(src, dst, *args, **kwargs)

    builtins.open, os.open, os.replace, os.rename = _open, _os_open, _replace, _rename

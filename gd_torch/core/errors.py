"""The one exception type a user sees, and the one place that words operating-system errors.

Every message a user reads is one line (``one_line``), and every ``OSError`` (a full disk, a
read-only folder, a missing permission, too many open files) is said the same way, naming the
file (``os_error_message``): the command line catches what escapes, and the training loop adds
what was kept and how to continue.
"""

import errno
import unicodedata


class GdTorchError(Exception):
    """A problem the user can fix (bad option, missing data, broken checkpoint, full disk).

    The command line prints ``gd-torch: error: <message>`` and exits with status 2,
    with no traceback; everything else is a bug and keeps its traceback. Subclasses that
    are not the user's mistake (an interrupted or diverged run) exit with their own status.
    """

    exit_code = 2


OS_ERROR_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file grew beyond the size this system allows (ulimit -f)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.EEXIST: "it exists already",
    errno.EMFILE: "too many open files (ulimit -n)",
    errno.ENFILE: "too many open files on this system",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EIO: "input/output error (a failing disk, or a closed terminal)",
    errno.ENOMEM: "out of memory",
    errno.EPIPE: "the program reading the output has stopped (broken pipe)",
    errno.EBUSY: "the device or file is busy",
    errno.ETXTBSY: "the file is busy",
    errno.ESTALE: "stale network file handle",
}


def os_error_message(error: OSError, name_files: bool = True) -> str:
    """``<file>: <reason>`` for an OSError, in words, naming the file(s) when it knows them (and
    ``name_files``: a caller that names the file itself asks for the reason alone)."""
    reason = OS_ERROR_REASONS.get(error.errno or 0) or (error.strerror or str(error) or "").strip()
    reason = reason or type(error).__name__
    files = [str(name) for name in (error.filename, error.filename2) if name not in (None, "")]
    return one_line(f"{' -> '.join(files)}: {reason}" if files and name_files else reason)


def one_line(text: str) -> str:
    """``text`` on one line: line breaks, other control characters and undecodable bytes (as a
    file name may hold) written as escapes, so that a message is always exactly one line."""
    return "".join(
        character.encode("unicode_escape", "backslashreplace").decode("ascii")
        if unicodedata.category(character) in ("Cc", "Zl", "Zp", "Cs")
        else character
        for character in str(text)
    )

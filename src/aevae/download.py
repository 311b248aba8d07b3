"""fetch: the four MNIST files from the first source that has them, verified by checksum. No torch here."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from aevae import UserError, atomic_path

# SHA-256 of the decompressed files: the .gz bytes differ between mirrors, the contents do not.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
OFFLINE = "offline? set MNIST_MIRROR to a folder (or base URL) holding the four MNIST files, .gz or not"


def fetch(sources: list[str], out: str | Path, sha256: dict[str, str] = SHA256) -> None:
    """Write the verified, decompressed files into `out`, taking each from the first source that has it.

    A source is a local folder or a base URL; `name.gz` and `name` are both accepted.
    Nothing is written unless every file was found and verified.
    """
    if not sources:
        raise UserError(f"fetch: no MNIST source; list base URLs in data.mirrors, or {OFFLINE}")
    with atomic_path(out, directory=True) as tmp:
        for name, digest in sha256.items():
            data, where = _first_valid(name, digest, sources)
            (tmp / name).write_bytes(data)
            print(f"fetch: {name} <- {where}")


def _first_valid(name: str, digest: str, sources: list[str]) -> tuple[bytes, str]:
    tried = []
    for source in sources:
        misses = {}
        for candidate in (f"{name}.gz", name):
            where = _join(source, candidate)
            try:
                data = _decompress(_read(where))
                _verify(data, digest)
                return data, where
            except _Miss as e:
                misses[where] = str(e)
        if len(set(misses.values())) == 1:  # say it once when both names failed alike
            misses = {f"{_join(source, name)}[.gz]": next(iter(misses.values()))}
        tried += [f"{where}: {why}" for where, why in misses.items()]
    raise UserError(f"fetch: no source gave a valid {name}; tried " + "; ".join(tried) + f"; {OFFLINE}")


class _Miss(Exception):
    """This candidate did not give the file: say why and try the next one."""


def _join(source: str, name: str) -> str:
    return source.rstrip("/") + "/" + name


def _is_url(where: str) -> bool:
    return where.split("://", 1)[0] in ("http", "https", "ftp", "file")


def _read(where: str) -> bytes:
    try:
        if _is_url(where):
            with urllib.request.urlopen(where, timeout=30) as r:
                return r.read()
        return Path(where).read_bytes()
    except FileNotFoundError:
        raise _Miss("not found") from None
    except urllib.error.HTTPError as e:
        raise _Miss("not found" if e.code == 404 else f"HTTP {e.code} {e.reason}") from None
    except OSError as e:  # URLError, HTTPError, timeouts and permission errors are all OSErrors
        raise _Miss(str(getattr(e, "reason", None) or e)) from None
    except http.client.HTTPException as e:  # IncompleteRead (fewer bytes than promised) is not an OSError
        raise _Miss(f"the connection broke off ({type(e).__name__})") from None


def _decompress(raw: bytes) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise _Miss(f"truncated or corrupt gzip ({e})") from None


def _verify(data: bytes, digest: str) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        what = "an HTML page" if data.lstrip()[:1] == b"<" else f"{len(data):,} bytes"
        raise _Miss(f"checksum mismatch: got {what} with SHA-256 {got[:12]}..., expected {digest[:12]}...")

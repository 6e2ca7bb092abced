"""Validation rules and archive safety, without a server."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from modelport.domain.errors import InvalidInput
from modelport.domain.names import check_dns_name
from modelport.domain.pipelines import parse_definition
from modelport.jobs.packages import ArchiveLimits, extract_zip, inspect_zip


@pytest.mark.parametrize("name", ["a", "api-pipeline", "A1-b2", "x" * 63])
def test_dns_names_accepted(name: str) -> None:
    assert check_dns_name(name, field="f", what="pipeline") == name


@pytest.mark.parametrize("name", ["", "a_b", "a.b", "-a", "a-", "x" * 64, "é", "a b", None, 5])
def test_dns_names_refused(name: object) -> None:
    with pytest.raises(InvalidInput):
        check_dns_name(name, field="f", what="pipeline")


def test_definitions() -> None:
    assert parse_definition({}) == [] and parse_definition("{}") == [] and parse_definition(None) == []
    steps = parse_definition({"steps": [{"ModelInference": {"models": [{"name": "m", "version": "v", "sha": "s"}]}}]})
    assert steps[0].models[0].name == "m"
    for bad in ([], {"steps": {}}, {"steps": [{"Other": {}}]}, {"steps": [{"ModelInference": {"models": []}}]},
                {"steps": [{"ModelInference": {"models": [{"name": "m"}]}}]}, {"unknown": 1}, "{"):
        with pytest.raises(InvalidInput):
            parse_definition(bad)


def make_zip(path, entries: dict[str, bytes], *, symlink: str | None = None) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")


def test_safe_archive_extracts(tmp_path) -> None:
    make_zip(tmp_path / "ok.zip", {"main.py": b"print(1)", "pkg/util.py": b"x = 1"})
    listing = extract_zip(tmp_path / "ok.zip", tmp_path / "out")
    assert set(listing.files) == {"main.py", "pkg/util.py"}
    assert (tmp_path / "out" / "pkg" / "util.py").read_bytes() == b"x = 1"


@pytest.mark.parametrize("entries, symlink, reason", [
    ({"../evil.py": b"x"}, None, "traversal"),
    ({"/abs/evil.py": b"x"}, None, "absolute"),
    ({"a/../../evil.py": b"x"}, None, "traversal"),
    ({"main.py": b"x"}, "link", "link"),
    ({"bomb.txt": b"\0" * (20 * 1024 * 1024)}, None, "ratio"),
])
def test_hostile_archives_are_refused(tmp_path, entries, symlink, reason) -> None:
    make_zip(tmp_path / "bad.zip", entries, symlink=symlink)
    with pytest.raises(InvalidInput) as error:
        inspect_zip(tmp_path / "bad.zip")
    assert reason in error.value.message
    assert not (tmp_path / "evil.py").exists()


def test_archive_limits_and_garbage(tmp_path) -> None:
    make_zip(tmp_path / "many.zip", {f"f{i}.py": b"x" for i in range(20)})
    with pytest.raises(InvalidInput, match="entries"):
        inspect_zip(tmp_path / "many.zip", ArchiveLimits(max_entries=10))
    with pytest.raises(InvalidInput, match="bytes"):
        inspect_zip(tmp_path / "many.zip", ArchiveLimits(max_uncompressed_bytes=5))
    (tmp_path / "garbage.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InvalidInput, match="ZIP"):
        inspect_zip(tmp_path / "garbage.zip")
    buffer = io.BytesIO()
    make_zip(buffer, {"main.py": b"print('hello')" * 100})
    corrupted = bytearray(buffer.getvalue())
    corrupted[60] ^= 0xFF
    (tmp_path / "crc.zip").write_bytes(bytes(corrupted))
    with pytest.raises(InvalidInput):
        inspect_zip(tmp_path / "crc.zip")


def test_schedules_and_log_lines() -> None:
    import re
    from datetime import datetime, timezone

    from modelport.domain.jobs import describe_schedule, log_line, next_fire, parse_schedule

    assert parse_schedule(" */5  * * * * ") == "*/5 * * * *"
    for bad in ("", None, 5, "* * * *", "61 * * * *", "* * * * * *", "every minute"):
        with pytest.raises(InvalidInput):
            parse_schedule(bad)
    assert parse_schedule("* * * * * */2", allow_seconds=True) == "* * * * * */2"
    start = datetime(2026, 1, 1, 12, 0, 30, tzinfo=timezone.utc)
    assert next_fire("*/2 * * * *", start) == datetime(2026, 1, 1, 12, 2, tzinfo=timezone.utc)
    assert describe_schedule("*/2 * * * *") == "Every 2 minutes"
    assert re.fullmatch(r"2026-01-01T12:00:30\.000000007Z stdout F hi",
                        log_line("stdout", "hi", ns=int(start.timestamp()) * 1_000_000_000 + 7))

"""`edge pack` / `edge unpack`: only the profile's files, checksummed; safe, atomic unpacking."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from edge.pack import pack_bundle
from edge.profiles import PROFILE_DIR
from edge.unpack import unpack_archive
from runtime.bundle import open_bundle
from runtime.errors import BundleError, ConfigError
from tests.edge.helpers import one_error_line, run_edge
from tests.support.folders import check_replaces_only_its_own


@pytest.fixture(scope="module")
def pi_archive(tmp_path_factory, edge_bundle_dir) -> Path:
    out = tmp_path_factory.mktemp("pack") / "tiny-pi5.tar.gz"
    proc = run_edge("pack", str(edge_bundle_dir), "--profile", "raspberry-pi-5-4gb", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "edge unpack tiny-pi5.tar.gz" in proc.stdout
    return out


def _members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_pack_keeps_only_what_the_profile_runs(pi_archive, edge_bundle_dir):
    members = _members(pi_archive)
    top = "tiny-raspberry-pi-5-4gb"
    names = sorted(n[len(top) + 1:] for n in members if n != top)
    assert names == sorted([
        "manifest.json", "profile.json", "README.md", "tokenizer.json", "examples/example.png",
        "perception-f32.gguf", "perception-mmproj-f32.gguf", "reasoner-f32.gguf",
    ])
    assert all(m.isreg() or m.isdir() for m in members.values())
    with tarfile.open(pi_archive) as tar:
        first_file = next(m for m in tar.getmembers() if m.isreg())
        assert first_file.name == f"{top}/manifest.json"  # streamable: checked before any model byte
        manifest = json.loads(tar.extractfile(first_file).read())
        profile = json.loads(tar.extractfile(f"{top}/profile.json").read())
        readme = tar.extractfile(f"{top}/README.md").read().decode()
        payload = {n[len(top) + 1:]: tar.extractfile(m).read() for n, m in members.items() if m.isreg()}
    assert profile["name"] == "raspberry-pi-5-4gb"
    for role, entry in manifest["models"].items():
        assert [(a["format"], a["quant"]) for a in entry["artifacts"]] == [("gguf", "f32")], role
    assert set(manifest["files"]) == set(payload) - {"manifest.json"}
    for rel, entry in manifest["files"].items():
        assert entry["size"] == len(payload[rel])
        assert entry["sha256"] == hashlib.sha256(payload[rel]).hexdigest()
    # the model files are byte-identical to the source bundle's
    assert payload["reasoner-f32.gguf"] == (edge_bundle_dir / "reasoner-f32.gguf").read_bytes()
    assert "raspberry-pi-5-4gb" in manifest["provenance"]["notes"]
    assert "edge unpack tiny-pi5.tar.gz --to" in readme and "tar -xf tiny-pi5.tar.gz" in readme
    assert "edge run --bundle" in readme


def test_pack_readme_names_an_install_that_works_and_the_projects_python(pi_archive):
    """Regression: the README named a package that is not on PyPI, and Python 3.11 where
    the project (pyproject.toml, README) says 3.10."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    repo = Path(__file__).resolve().parents[2]
    minimum = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["requires-python"]
    assert minimum == ">=3.10"
    assert "Python 3.10+" in (repo / "README.md").read_text()
    with tarfile.open(pi_archive) as tar:
        readme = tar.extractfile("tiny-raspberry-pi-5-4gb/README.md").read().decode()
    assert re.search(r"^Python 3\.10 or newer", readme, re.M)
    installs = [ln for ln in readme.splitlines() if "pip install" in ln]
    assert installs == ['pip install -e "$HOME/extract-think-edge[llamacpp]"']


def test_unpack_into_a_fresh_directory_then_edge_run(pi_archive, edge_bundle_dir, tmp_path):
    dest = tmp_path / "device" / "bundle"
    proc = run_edge("unpack", str(pi_archive), "--to", str(dest))
    assert proc.returncode == 0, proc.stderr
    bundle = open_bundle(dest, verify="full")
    assert bundle.manifest.formats() == {"gguf"}
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no staging left
    # the unpacked bundle answers the example it carries exactly as the source bundle does
    # with the same profile (greedy): the same files, the same plan, the same text
    same = ["--json", "--greedy", "--thinking-budget", "8", "--profile", "raspberry-pi-5-4gb", "--verify", "size"]
    run = run_edge("run", "--bundle", str(dest), *same)
    assert run.returncode == 0, run.stderr
    source = run_edge("run", "--bundle", str(edge_bundle_dir), *same)
    assert source.returncode == 0, source.stderr
    got, want = json.loads(run.stdout), json.loads(source.stdout)
    assert got["backend"]["reasoner"].startswith("llamacpp") and got["backend"] == want["backend"]
    assert set(got["stages"]) >= {"extraction", "answer"}
    for key in ("question", "answer", "answer_found", "extraction", "thinking", "answer_text"):
        assert got[key] == want[key], key


def test_pack_onnx_for_the_laptop_as_plain_tar(edge_bundle_dir, tmp_path, image_png):
    out = tmp_path / "laptop.tar"
    proc = run_edge("pack", str(edge_bundle_dir), "--profile", "laptop", "--backend", "onnx",
                    "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["selection"]["backend"] == "onnx"
    assert report["selection"]["quants"] == {"perception": "fp32", "reasoner": "fp32"}
    assert not any(name.endswith(".gguf") for name in report["files"])
    with open(out, "rb") as fh:
        assert fh.read(2) != b"\x1f\x8b"  # not gzipped: the name says .tar
    dest = unpack_archive(out, tmp_path / "laptop-bundle")
    run = run_edge("run", "--bundle", str(dest), "--image", str(image_png), "--question",
                   "What is in the picture?", "--json", "--thinking-budget", "4")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["backend"]["reasoner"].startswith("onnx")


def test_wrong_profile_name_lists_the_known_ones(edge_bundle_dir, tmp_path):
    proc = run_edge("pack", str(edge_bundle_dir), "--profile", "raspberry-pi-6", "--out",
                    str(tmp_path / "x.tar"))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "unknown profile 'raspberry-pi-6'" in line and "raspberry-pi-5-4gb" in line and "laptop" in line
    assert not (tmp_path / "x.tar").exists()


def test_bundle_lacking_the_profiles_format(onnx_only_bundle_dir, tmp_path):
    gguf_only = json.loads((PROFILE_DIR / "raspberry-pi-4.json").read_text())
    gguf_only.update(name="pi4-llamacpp-only", backends=["llamacpp"])
    profile = tmp_path / "pi4-llamacpp-only.json"
    profile.write_text(json.dumps(gguf_only))
    proc = run_edge("pack", str(onnx_only_bundle_dir), "--profile", str(profile), "--out",
                    str(tmp_path / "x.tar"))
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert "has no gguf files" in line and "pi4-llamacpp-only" in line and "has: onnx" in line
    assert not list(tmp_path.glob("*.tar")) and not list(tmp_path.glob(".*tmp"))
    # a profile listing both backends falls back to the format the bundle has
    proc = run_edge("pack", str(onnx_only_bundle_dir), "--profile", "raspberry-pi-4", "--out",
                    str(tmp_path / "y.tar"), "--json")
    assert proc.returncode == 0, proc.stderr
    sel = json.loads(proc.stdout)["selection"]
    assert sel["backend"] == "onnx" and "llamacpp: the bundle has no gguf files" in sel["passed_over"][0]


def test_profile_without_a_present_quant(edge_bundle_dir, tmp_path):
    data = json.loads((PROFILE_DIR / "raspberry-pi-4.json").read_text())
    data["quants"] = {"gguf": ["q4_k_m", "q4_0"], "onnx": ["int4"]}
    path = tmp_path / "strict.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="accepts gguf quantizations q4_k_m, q4_0, but the bundle's"):
        pack_bundle(edge_bundle_dir, str(path), tmp_path / "x.tar")


def test_pack_refuses_to_overwrite_and_a_corrupt_source(edge_bundle_dir, tmp_path):
    out = tmp_path / "a.tar"
    out.write_bytes(b"keep me")
    with pytest.raises(ConfigError, match="already exists"):
        pack_bundle(edge_bundle_dir, "laptop", out)
    assert out.read_bytes() == b"keep me"
    # a modified model file in the source is caught before it is packed and re-checksummed
    copy = tmp_path / "corrupt"
    shutil.copytree(edge_bundle_dir, copy)
    data = bytearray((copy / "reasoner-f32.gguf").read_bytes())
    data[-1] ^= 0xFF
    (copy / "reasoner-f32.gguf").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="wrong sha256"):
        pack_bundle(copy, "laptop", tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists() and not list(tmp_path.glob(".b.tar*"))


def test_unpack_refuses_a_non_empty_target_unless_forced_and_a_bundle(pi_archive, tmp_path):
    check_replaces_only_its_own(lambda out, overwrite: unpack_archive(pi_archive, out, overwrite=overwrite),
                                tmp_path / "bundle", "manifest.json")
    # an existing bundle (it has manifest.json) is replaced when forced
    unpack_archive(pi_archive, tmp_path / "old")
    (tmp_path / "old" / "stale.bin").write_bytes(b"from the old bundle")
    assert unpack_archive(pi_archive, tmp_path / "old", overwrite=True) == (tmp_path / "old").resolve()
    assert not (tmp_path / "old" / "stale.bin").exists()
    open_bundle(tmp_path / "old", verify="full")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert unpack_archive(pi_archive, empty) == empty.resolve()


def test_force_never_replaces_a_folder_that_is_not_a_bundle(pi_archive, tmp_path):
    """Regression: `edge unpack X --to DIR --force` deleted a folder of the user's files."""
    dest = tmp_path / "documents"
    dest.mkdir()
    (dest / "thesis.txt").write_text("years of work")
    proc = run_edge("unpack", str(pi_archive), "--to", str(dest), "--force")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "has no manifest.json" in line and "refusing to replace" in line
    assert [p.name for p in dest.iterdir()] == ["thesis.txt"] and (dest / "thesis.txt").read_text() == "years of work"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left either
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    with pytest.raises(ConfigError, match="not a folder"):
        unpack_archive(pi_archive, a_file, overwrite=True)
    assert a_file.read_text() == "keep"


@pytest.mark.parametrize("where", ["file", "folder"])
def test_pack_refuses_links_that_leave_the_bundle(edge_bundle_dir, tmp_path, where):
    """Regression: a listed file that is a symlink to a file outside the bundle (with the
    manifest's size and hash set to match it) was followed and its bytes packed."""
    secret = tmp_path / "outside" / "secret.json"
    secret.parent.mkdir()
    secret.write_bytes((edge_bundle_dir / "tokenizer.json").read_bytes())  # size and hash match
    copy = tmp_path / "b"
    shutil.copytree(edge_bundle_dir, copy)
    if where == "file":
        (copy / "tokenizer.json").unlink()
        (copy / "tokenizer.json").symlink_to(secret)
        rel = "tokenizer.json"
    else:  # a folder on the way is the link
        shutil.rmtree(copy / "examples")
        (tmp_path / "outside" / "example.png").write_bytes((edge_bundle_dir / "examples" / "example.png").read_bytes())
        (copy / "examples").symlink_to(tmp_path / "outside")
        rel = "examples/example.png"
    out = tmp_path / "x.tar"
    proc = run_edge("pack", str(copy), "--profile", "laptop", "--out", str(out))
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert f"'{rel}' is a symbolic link to" in line and "outside the bundle (refused)" in line
    assert not out.exists() and not list(tmp_path.glob(".x.tar*"))


def test_pack_accepts_links_that_stay_inside_the_bundle(edge_bundle_dir, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(edge_bundle_dir, copy)
    (copy / "store").mkdir()
    (copy / "tokenizer.json").rename(copy / "store" / "tokenizer.json")
    (copy / "tokenizer.json").symlink_to(Path("store") / "tokenizer.json")
    result = pack_bundle(copy, "laptop", tmp_path / "x.tar")
    with tarfile.open(result.archive) as tar:
        member = tar.getmember(f"{tar.getnames()[0]}/tokenizer.json")
        assert member.isreg()
        assert tar.extractfile(member).read() == (edge_bundle_dir / "tokenizer.json").read_bytes()


# ---- hostile archives ------------------------------------------------------------------


def _entries(archive: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(archive) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]


def _write_tar(path: Path, entries) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _tampered(pi_archive: Path, tmp_path: Path, how: str) -> Path:
    entries = _entries(pi_archive)
    top = entries[0][0].name
    if how == "traversal":
        entries.append(_reg(f"{top}/../../evil.txt", b"x"))
    elif how == "absolute":
        entries.append(_reg("/tmp/evil.txt", b"x"))
    elif how in ("symlink", "hardlink"):
        link = tarfile.TarInfo(f"{top}/link")
        link.type = tarfile.SYMTYPE if how == "symlink" else tarfile.LNKTYPE
        link.linkname = "/etc/passwd"
        entries.insert(2, (link, None))
    elif how == "device":
        dev = tarfile.TarInfo(f"{top}/null")
        dev.type = tarfile.CHRTYPE
        entries.insert(2, (dev, None))
    elif how == "unlisted":
        entries.append(_reg(f"{top}/extra.bin", b"not in the manifest"))
    elif how == "hash":
        for i, (info, data) in enumerate(entries):
            if info.name.endswith("reasoner-f32.gguf"):
                entries[i] = (info, data[:-1] + bytes([data[-1] ^ 1]))
    elif how == "size":
        for i, (info, data) in enumerate(entries):
            if info.name.endswith("tokenizer.json"):
                entries[i] = (info, data + b" ")
    elif how == "missing":
        entries = [(i, d) for i, d in entries if not i.name.endswith("perception-mmproj-f32.gguf")]
    elif how == "duplicate":
        entries.append(next((i, d) for i, d in entries if i.name.endswith("tokenizer.json")))
    elif how == "manifest-not-first":
        entries = [entries[0], *entries[2:], entries[1]]
    elif how == "outside-top":
        entries.append(_reg("other/manifest.json", b"{}"))
    elif how == "manifest-path":
        m = json.loads(entries[1][1])
        m["files"]["../escape.bin"] = {"size": 1, "sha256": "0" * 64}
        entries[1] = (entries[1][0], json.dumps(m).encode())
    return _write_tar(tmp_path / f"{how}.tar", entries)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("traversal", "unsafe path"),
        ("absolute", "outside the archive's folder"),
        ("symlink", "is a link: refused"),
        ("hardlink", "is a link: refused"),
        ("device", "is a special file: refused"),
        ("unlisted", "'extra.bin' is not listed in its manifest"),
        ("hash", "'reasoner-f32.gguf' has the wrong sha256"),
        ("size", "'tokenizer.json' is"),
        ("missing", "missing 1 file(s) its manifest lists: perception-mmproj-f32.gguf"),
        ("duplicate", "holds 'tokenizer.json' twice"),
        ("manifest-not-first", "the first file is"),
        ("outside-top", "outside the archive's folder"),
        ("manifest-path", "unsafe path: '../escape.bin'"),
    ],
)
def test_hostile_archives_are_refused_and_leave_nothing(pi_archive, tmp_path, how, message):
    bad = _tampered(pi_archive, tmp_path, how)
    dest = tmp_path / "out" / "bundle"
    with pytest.raises(BundleError) as info:
        unpack_archive(bad, dest)
    assert message in str(info.value)
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []  # the staging directory is gone too
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_truncated_and_non_tar_files(pi_archive, tmp_path):
    data = pi_archive.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    notar = tmp_path / "photo.tar"
    notar.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 600)
    for bad in (cut, notar):
        proc = run_edge("unpack", str(bad), "--to", str(tmp_path / "dest"))
        assert proc.returncode == 3, proc.stderr
        line = one_error_line(proc)
        assert "not a readable tar archive" in line or "not an edge pack archive" in line
        assert not (tmp_path / "dest").exists()


def test_doctor_json_on_the_unpacked_bundle_uses_its_profile(pi_archive, tmp_path):
    dest = unpack_archive(pi_archive, tmp_path / "b")
    proc = run_edge("doctor", "--json", "--bundle", str(dest))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["choice"]["profile"] == "raspberry-pi-5-4gb"
    assert "profile.json" in report["choice"]["source"]

"""`edge doctor`: what this machine looks like to the runtime, and what it would run.

    edge doctor                 readable report
    edge doctor --json          the same as one JSON object
    edge doctor --bundle B --profile raspberry-pi-5-4gb

Exit code 0 when a bundle was found and a backend able to run it is installed, 1 otherwise
(the report says what is missing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.device import DeviceInfo, detect
from edge.plan import effective_threads, make_plan, resolve_profile
from edge.selection import BACKEND_LIBRARIES, backend_status
from runtime.bundle import read_manifest
from runtime.defaults import default_bundle_path
from runtime.errors import EdgeError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        description="Detect the CPU, memory, board (Raspberry Pi, Jetson) and CUDA; list the "
        "installed backends (llama-cpp-python, onnxruntime) and their GPU support; check the "
        "bundle (the shipped default unless --bundle); and say which device profile, backend "
        "and quantization a run would use.",
    )
    p.add_argument("--bundle", type=Path, help="bundle to check (default: the shipped one)")
    p.add_argument("--profile", help="profile name or file instead of the detected one")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=main)


def _bundle_report(path: Path) -> dict:
    report: dict = {"path": str(path), "present": False}
    try:
        m = read_manifest(path)
    except EdgeError as exc:
        report["error"] = str(exc)
        return report
    missing = [rel for rel, e in m.files.items()
               if not (path / rel).is_file() or (path / rel).stat().st_size != e.size]
    report.update(
        present=not missing,
        name=m.name,
        formats=sorted(m.formats()),
        artifacts={role: [f"{a.format}/{a.quant}" for a in entry.artifacts]
                   for role, entry in m.models.items()},
        size_mb=round(sum(e.size for e in m.files.values()) / 1e6, 2),
    )
    if missing:
        report["error"] = f"missing or wrong-size files: {', '.join(sorted(missing)[:5])}"
    return report


def collect(bundle: Path | None, profile: str | None, info: DeviceInfo | None = None) -> dict:
    """Everything doctor reports, as plain data; `info` describes the machine (default: detected)."""
    info = info or detect()
    backends = {name: backend_status(name, probe=True).to_dict() for name in BACKEND_LIBRARIES}
    try:
        bundle_path = bundle if bundle is not None else default_bundle_path()
        bundle_info = _bundle_report(Path(bundle_path))
    except EdgeError as exc:  # no default bundle installed
        bundle_path, bundle_info = None, {"present": False, "error": str(exc)}
    bundle_info["default"] = bundle is None
    resolution = resolve_profile(profile, bundle_path if bundle_info.get("present") else None, info)
    chosen: dict = {
        "profile": resolution.profile.name,
        "title": resolution.profile.title,
        "source": resolution.source,
        "threads": effective_threads(resolution.profile, info),
    }
    if bundle_info.get("present"):
        try:
            chosen["plan"] = make_plan(bundle_path, resolution, info).to_dict()
        except EdgeError as exc:
            chosen["error"] = str(exc)
    else:
        chosen["error"] = "no bundle to run: " + bundle_info.get("error", "not found")
    ok = bool(bundle_info.get("present")) and "plan" in chosen
    return {"ok": ok, "device": info.to_dict(), "backends": backends, "bundle": bundle_info,
            "choice": chosen}


def _print_report(r: dict) -> None:
    d = r["device"]
    cuda = d["cuda"]
    print("Device")
    print(f"  system     {d['system']} {d['arch']}, Python {d['python']}")
    print(f"  CPU        {d['cpu_model']}: {d['logical_cores']} logical / {d['physical_cores']} "
          f"physical cores, {d['usable_cores']} usable")
    limit = f", cgroup limit {d['cgroup_limit_mb']} MB" if d["cgroup_limit_mb"] else ""
    print(f"  memory     {d['memory_total_mb'] / 1024:.1f} GB total, "
          f"{d['memory_available_mb'] / 1024:.1f} GB available{limit}")
    print(f"  board      {d['board_model'] or '-'}"
          + (f"  (Jetson: {d['jetson_release'] or 'yes'})" if d["is_jetson"] else ""))
    print(f"  CUDA       {'yes (' + ', '.join(cuda['evidence']) + ')' if cuda['available'] else 'not found'}")
    print("Backends")
    for name, b in r["backends"].items():
        state = f"{b['module']} {b['version'] or ''}".strip() if b["installed"] else "not installed"
        extra = f" ({b['detail']})" if b["detail"] else ""
        print(f"  {name:10s} {state}{extra}")
    bi = r["bundle"]
    print("Bundle" + (" (shipped default)" if bi.get("default") else ""))
    if bi.get("present"):
        arts = "; ".join(f"{role}: {', '.join(a)}" for role, a in bi["artifacts"].items())
        print(f"  {bi['name']} at {bi['path']}, {bi['size_mb']} MB")
        print(f"  artifacts  {arts}")
    else:
        print(f"  not usable: {bi.get('error', 'not found')}")
    c = r["choice"]
    print("Choice")
    print(f"  profile    {c['profile']} ({c['title']}); {c['source']}")
    if "plan" in c:
        p = c["plan"]
        sel = p["selection"]
        quants = ", ".join(f"{k} {v}" for k, v in sorted(sel["quants"].items()))
        cap = f"{p['max_memory_mb']} MB" if p["max_memory_mb"] else "what is available"
        print(f"  would run  {sel['backend']} ({sel['format']}: {quants}), {p['threads']} threads, "
              f"context {p['context_length']}, memory cap {cap}, residency {p['residency']}")
        b = p["budgets"]
        print(f"  budgets    hint {b['hint']}, extraction {b['extraction']}, thinking "
              f"{b['thinking'] if p['thinking'] else 'off'}, answer {b['answer']}")
        for why in sel["passed_over"]:
            print(f"  passed over {why}")
    else:
        print(f"  cannot run: {c['error']}")


def main(args: argparse.Namespace) -> int:
    report = collect(args.bundle, args.profile)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0 if report["ok"] else 1

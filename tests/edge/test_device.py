"""Device detection from /proc, /sys and /etc files, and the profile it picks."""

from __future__ import annotations

from pathlib import Path

from edge.device import choose_profile, detect
from edge.profiles import load_profiles

PI5_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
    f"atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
    f"CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
    for i in range(4)
) + "Revision\t: d04170\nSerial\t\t: 0123456789abcdef\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"

PI4_CPUINFO = PI5_CPUINFO.replace("0xd0b", "0xd08").replace("Raspberry Pi 5 Model B Rev 1.0",
                                                             "Raspberry Pi 4 Model B Rev 1.4")


def _meminfo(total_mb: int, avail_mb: int) -> str:
    return f"MemTotal:       {total_mb * 1024} kB\nMemFree:        1000 kB\nMemAvailable:   {avail_mb * 1024} kB\n"


def make_root(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    root = tmp_path / "root"
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    return root


def test_the_running_machine_is_described_consistently():
    info = detect()
    assert 1 <= info.usable_cores <= info.logical_cores and 1 <= info.physical_cores <= info.logical_cores
    assert info.memory_total_mb > 0 and 0 < info.memory_available_mb <= info.memory_total_mb
    assert info.python and info.arch
    assert choose_profile(info).profile.name in {p.name for p in load_profiles()}


def test_an_x86_laptop_without_a_board_falls_back_to_the_laptop_profile(tmp_path):
    cpuinfo = "".join(f"processor\t: {i}\nmodel name\t: AMD Ryzen 7 5800U\nphysical id\t: 0\n"
                      f"core id\t\t: {i % 8}\n\n" for i in range(16))
    root = make_root(tmp_path, {"proc/cpuinfo": cpuinfo, "proc/meminfo": _meminfo(15800, 9000)})
    info = detect(root)
    assert info.board_model is None and not info.is_jetson and not info.cuda.available
    assert (info.logical_cores, info.physical_cores) == (16, 8) and info.arch == "x86_64"
    choice = choose_profile(info)
    assert choice.profile.name == "laptop" and "fallback" in choice.reason


def test_raspberry_pi_5_8gb(tmp_path):
    root = make_root(tmp_path, {
        "proc/device-tree/model": b"Raspberry Pi 5 Model B Rev 1.0\x00",
        "proc/cpuinfo": PI5_CPUINFO,
        "proc/meminfo": _meminfo(8062, 7400),
    })
    info = detect(root)
    assert info.board_model == "Raspberry Pi 5 Model B Rev 1.0"
    assert info.cpu_model == "Cortex-A76" and info.arch == "aarch64"
    assert (info.logical_cores, info.physical_cores) == (4, 4)
    choice = choose_profile(info)
    assert choice.profile.name == "raspberry-pi-5-8gb"
    assert "Raspberry Pi 5" in choice.reason


def test_raspberry_pi_5_4gb_from_sysfs_devicetree(tmp_path):
    root = make_root(tmp_path, {
        "sys/firmware/devicetree/base/model": b"Raspberry Pi 5 Model B Rev 1.0\x00",
        "proc/cpuinfo": PI5_CPUINFO,
        "proc/meminfo": _meminfo(4045, 3500),
    })
    assert choose_profile(detect(root)).profile.name == "raspberry-pi-5-4gb"


def test_raspberry_pi_4_from_cpuinfo_model_line(tmp_path):
    # containers often hide /proc/device-tree; the cpuinfo "Model" line still names the board
    root = make_root(tmp_path, {"proc/cpuinfo": PI4_CPUINFO, "proc/meminfo": _meminfo(3796, 3000)})
    info = detect(root)
    assert info.board_model == "Raspberry Pi 4 Model B Rev 1.4" and info.cpu_model == "Cortex-A72"
    assert choose_profile(info).profile.name == "raspberry-pi-4"


def test_jetson_orin_nano(tmp_path):
    root = make_root(tmp_path, {
        "proc/device-tree/model": b"NVIDIA Jetson Orin Nano Developer Kit\x00",
        "etc/nv_tegra_release": "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64\n",
        "proc/cpuinfo": PI5_CPUINFO.replace("0xd0b", "0xd42").split("Revision")[0],
        "proc/meminfo": _meminfo(7620, 6000),
        "usr/local/cuda/version.json": "{}",
    })
    info = detect(root)
    assert info.is_jetson and info.jetson_release.startswith("# R36")
    assert info.cuda.available and "/usr/local/cuda" in info.cuda.evidence
    assert info.cpu_model == "Cortex-A78AE"
    assert choose_profile(info).profile.name == "jetson-orin-nano"


def test_x86_hyperthreads_cgroup_limits_and_nvidia_driver(tmp_path):
    cpuinfo = "".join(
        f"processor\t: {i}\nmodel name\t: Intel(R) Core(TM) i7-1165G7\nphysical id\t: 0\n"
        f"core id\t\t: {i % 4}\n\n" for i in range(8)
    )
    root = make_root(tmp_path, {
        "proc/cpuinfo": cpuinfo,
        "proc/meminfo": _meminfo(16000, 12000),
        "sys/fs/cgroup/memory.max": str(3 << 30) + "\n",
        "sys/fs/cgroup/cpu.max": "200000 100000\n",
        "proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar\n",
    })
    info = detect(root)
    assert (info.logical_cores, info.physical_cores, info.usable_cores) == (8, 4, 2)
    assert info.cgroup_limit_mb == 3072 and info.memory_total_mb == 3072 and info.ram_mb == 16000
    assert info.memory_available_mb <= 3072
    assert info.cuda.available and info.cuda.driver_version == "550.54.15"
    assert choose_profile(info).profile.name == "laptop"


def test_unknown_arm_board_falls_back_to_laptop(tmp_path):
    root = make_root(tmp_path, {
        "proc/device-tree/model": b"Radxa ROCK 5B\x00",
        "proc/cpuinfo": PI5_CPUINFO.split("Revision")[0],
        "proc/meminfo": _meminfo(16000, 15000),
    })
    assert choose_profile(detect(root)).profile.name == "laptop"

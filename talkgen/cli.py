"""The talkgen command line: parse, call, print. No model code here."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

if TYPE_CHECKING:
    from talkgen.batching.jobs import Options

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Render talking-avatar videos on your own machine: script in, video out.",
    pretty_exceptions_enable=False,
)


def _stderr():
    from rich.console import Console

    return Console(stderr=True)


def handles_errors(fn):
    """Turn talkgen's own errors into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from talkgen import stopping
        from talkgen.errors import TalkgenError

        try:
            with stopping.handling():  # SIGTERM and SIGHUP raise stopping.Terminated here
                return fn(*args, **kwargs)
        except stopping.Terminated as exc:
            stopping.kill_children()  # whatever the cleanup did not reach
            stopping.remove_temporaries()
            try:
                _stderr().print(exc.message(), highlight=False, markup=False, soft_wrap=True)
            except OSError:  # SIGHUP: the terminal may be gone
                pass
            raise typer.Exit(exc.exit_code) from None
        except TalkgenError as exc:
            _stderr().print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            # Disk full, permissions changed mid-run: the environment, not a bug.
            where = f" ({exc.filename})" if exc.filename else ""
            _stderr().print(f"[bold red]error:[/] {exc.strerror or exc}{where}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            _stderr().print("interrupted: finished work is kept; run the same command again to resume")
            raise typer.Exit(130) from None

    return wrapper


# The options `render` and `batch` share, declared once; the command gets them as one
# batching.jobs.Options (`job`). In a batch they apply to every job; a job's own settings win.
_JOB_OPTIONS = (
    ("say", bool, typer.Option(False, "--say", help="Speak the script (or the recording's transcript) as written: no LLM.")),
    ("persona", Optional[str], typer.Option(None, "--persona", help="Who the avatar is when it answers (shortcut for llm.persona).")),
    ("recipe", str, typer.Option("cpu", "--recipe", help="Recipe name (talkgen recipes lists them) or a path to a .yaml file.")),
    ("portrait", Optional[Path], typer.Option(None, "--portrait", help="Picture of a face (JPEG/PNG); default: the bundled astronaut "
                                                                      "(in a batch, for every job without its own).")),
    ("voice", Optional[Path], typer.Option(None, "--voice", help="A 2-15 s recording of the voice to clone "
                                                                "(needs tts.engine=f5-tts, as in gpu-1x).")),
    ("voice_text", Optional[str], typer.Option(None, "--voice-text", help="What the --voice recording says; default: talkgen transcribes it.")),
    ("size", Optional[int], typer.Option(None, "--size", help="Output width and height in pixels (shortcut for render.size).")),
    ("force", Optional[List[str]], typer.Option(None, "--force", help="Redo this stage even if cached (repeatable; in a batch, in every job).")),
    ("from_stage", Optional[str], typer.Option(None, "--from", help="Redo this stage and every stage after it (in a batch, in every job).")),
)


def _takes_job_options(fn):
    """Give a command the shared options (_JOB_OPTIONS) in place of its `job` parameter."""
    import inspect

    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name != "job"]
    shared = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=kind)
              for name, kind, option in _JOB_OPTIONS]

    @functools.wraps(fn)
    def command(**values):
        from talkgen.batching.jobs import Options

        given = {name: values.pop(name) for name, _, _ in _JOB_OPTIONS}
        job = Options(**{**given, "force": list(given["force"] or [])})
        return fn(job=job, **values)

    at = next(i for i, p in enumerate(own) if p.name == "output") + 1  # in --help: after -o, before the command's own
    command.__signature__ = sig.replace(parameters=own[:at] + shared + own[at:])  # what Typer reads the options from
    command.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != "job"}  # Typer resolves these
    return command


@app.command()
@handles_errors
@_takes_job_options
def render(
    script: Path = typer.Argument(..., help="A script (.txt; paragraphs are questions, or lines to say with --say) "
                                        "or a recorded question (.wav, .mp3, or a video with sound such as .mp4)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Recipe overrides such as render.size=256", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="The video to write (.mp4); .srt and .report.json go beside it."),
    job_dir: Optional[Path] = typer.Option(None, "--job-dir", help="Job directory (default .talkgen/jobs/<output>-<hash>)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bars or summary table."),
    as_json: bool = typer.Option(False, "--json", help="Print the render report (as in the .report.json) on stdout instead of the video's path."),
    live: bool = typer.Option(False, "--live", help="Also write an HLS playlist (.m3u8, segments in a .live folder) beside the video "
                                                     "that lists each chunk as soon as it is made: play it while it renders."),
    job: Options | None = None,
) -> None:
    """Render a talking-avatar video that answers SCRIPT (or says it, with --say)."""
    from talkgen.batching.jobs import build_recipe
    from talkgen.pipeline import RenderRequest, run

    rec = build_recipe(job.recipe, list(overrides or []), job.size, job.persona, job.voice, job.voice_text)
    from talkgen.progress import RichProgress

    from talkgen.stopping import Terminated

    console = _stderr()
    prog = RichProgress(console, enabled=not quiet)
    request = RenderRequest(script, output, rec, job.portrait, job_dir, job.force, job.from_stage, job.say, live=live)
    try:
        report = run(request, prog)
    except Terminated as exc:
        from talkgen.pipeline import default_job_dir, kept

        exc.kept = kept(job_dir or default_job_dir(output))
        raise
    finally:
        prog.close()
    if not quiet:
        from talkgen.report import print_table

        print_table(report, console)
    if as_json:
        import json

        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(report["artifacts"]["video"])


def _set_voice(rec, voice: Optional[Path], voice_text: Optional[str]) -> None:
    from talkgen.batching.jobs import set_voice

    set_voice(rec, voice, voice_text)


@app.command()
@handles_errors
@_takes_job_options
def batch(
    inputs: List[str] = typer.Argument(..., help="A folder of scripts and recordings, files, or a jobs.yaml; "
                                                    "key=value recipe overrides may follow.", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="The folder to write <name>.mp4, .srt, .report.json and batch.report.json into."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Warm workers (default: from the recipe and the machine; 1 for the cpu recipe)."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Run the workers on a Ray cluster: auto, or HOST:PORT of its head."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the cost and the job list, and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the batch report (or with --dry-run the plan) as JSON on stdout."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No live view."),
    job: Options | None = None,
) -> None:
    """Render many videos with the models loaded once: finished jobs are skipped, interrupted ones resumed."""
    import dataclasses
    import json

    from talkgen.batching import run as batches

    files, items = [], []
    for arg in inputs:
        (items if "=" in arg and not Path(arg).exists() else files).append(arg)
    opts = dataclasses.replace(job, overrides=items)
    specs, n = batches.prepare([Path(f) for f in files], opts, workers, ray)
    err = _stderr()
    if dry_run:
        planned = batches.plan(specs, output, n)
        if as_json:
            print(json.dumps(planned, indent=2))
            return
        err.print(batches.describe(planned["cost"]), highlight=False, soft_wrap=True)
        for j in planned["jobs"]:
            print(f"{j['name']}\t{j['mode']}\t~{j['video_s']:.0f} s\t{'finished' if j['finished'] else 'to render'}\t{j['input']}")
        return
    batches.check_out(output)
    cost = batches.describe(batches.plan(specs, output, n)["cost"])
    with _results_only_on_stdout() as results:
        report = batches.run_batch(specs, output, n, ray_address=ray, console=err, live=not quiet, announce=cost)
    for line in batches.summary_lines(report):
        err.print(line, highlight=False, soft_wrap=True, markup=False)
    if as_json:
        results.write(json.dumps(report, indent=2) + "\n")
    else:
        results.write("".join(j["output"] + "\n" for j in report["jobs"] if j["status"] == "done"))
    results.flush()
    raise typer.Exit(batches.exit_code(report))


@contextlib.contextmanager
def _results_only_on_stdout():
    """From here to the end of the process, whatever else writes to stdout (Ray's driver prints
    a node's death there, and may again as it shuts down) goes to stderr, so a script reading
    --json gets the report alone; yields the real stdout, for the results."""
    sys.stdout.flush()
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    yield results


@app.command()
@handles_errors
def chat(
    overrides: Optional[List[str]] = typer.Argument(None, help="Recipe overrides such as llm.max_reply_words=30", show_default=False),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Recipe name (talkgen recipes lists them) or a path to a .yaml file "
                                                      "(default: cpu, or the resumed session's)."),
    persona: Optional[str] = typer.Option(None, "--persona", help="Who the avatar is (shortcut for llm.persona)."),
    no_video: bool = typer.Option(False, "--no-video", help="Text only: no speech and no clips."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue a session: its id under .talkgen/chats, or its folder."),
    session_dir: Optional[Path] = typer.Option(None, "--session-dir", help="Where to keep the new session (default .talkgen/chats/<date-time>)."),
    voice: Optional[Path] = typer.Option(None, "--voice", help="A 2-15 s recording of the voice to clone (needs tts.engine=f5-tts, as in gpu-1x)."),
    voice_text: Optional[str] = typer.Option(None, "--voice-text", help="What the --voice recording says; default: talkgen transcribes it."),
) -> None:
    """Talk with the avatar: replies stream as they are written, each turn's clip renders in the background."""
    from talkgen.chat import session as sessions
    from talkgen.chat.repl import check_can_chat, start
    from talkgen.errors import UsageError
    from talkgen.recipe import apply_override, load_recipe, place, recipe_from_dict

    if resume and session_dir:
        raise UsageError("--resume names the session folder already: drop --session-dir")
    if persona is not None and not persona.strip():
        raise UsageError("--persona is empty: describe who the avatar is, e.g. --persona \"a tour guide in Lisbon\"")
    root = sessions.find_session(resume) if resume else None
    if root is not None and recipe is None:
        rec = recipe_from_dict(sessions.read_info(root)["recipe"])
        for item in overrides or []:
            apply_override(rec, item)
        place(rec)
    else:
        rec = load_recipe(recipe or "cpu", list(overrides or []))
    _set_voice(rec, voice, voice_text)
    check_can_chat(rec, video=not no_video)
    session = sessions.open_session(root) if root is not None else sessions.new_session(rec.to_dict(), root=session_dir)
    start(rec, not no_video, session, persona.strip() if persona else None)


@app.command()
@handles_errors
def serve(
    overrides: Optional[List[str]] = typer.Argument(None, help="Recipe overrides for every job, such as render.size=256", show_default=False),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; any but loopback needs --token-file."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free one)."),
    recipe: str = typer.Option("cpu", "--recipe", help="Recipe name (talkgen recipes lists them) or a path to a .yaml file."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Warm workers (default: from the recipe and the machine; 1 for the cpu recipe)."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Run the workers on a Ray cluster: auto, or HOST:PORT of its head."),
    out: Path = typer.Option(Path(".talkgen/serve"), "--out", help="Where the jobs, their videos and the queue are kept (a restart resumes them)."),
    persona: Optional[str] = typer.Option(None, "--persona", help="Who the avatar is, unless a job or its session says otherwise."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="A file holding the token every API request must carry."),
    new_token: bool = typer.Option(False, "--new-token", help="Write a new token file (mode 0600) at --token-file or ~/.config/talkgen/token; print its path."),
    max_queued: int = typer.Option(8, "--max-queued", help="Jobs one client may have queued or running; more get 429."),
) -> None:
    """Serve the avatar: a page to talk to it in a browser, and a job API (http://127.0.0.1:8000 by default)."""
    from talkgen.server import auth

    if new_token:
        print(auth.new_token(token_file or auth.DEFAULT_TOKEN_FILE))
        return
    from talkgen.server.serve import Options, serve as run_server

    run_server(Options(host, port, recipe, list(overrides or []), workers, ray, out, persona, token_file, max_queued), say=_stderr_line)


def _stderr_line(text: str) -> None:
    _stderr().print(text, highlight=False, markup=False, soft_wrap=True)


@app.command()
@handles_errors
def recipes(as_json: bool = typer.Option(False, "--json", help="Print the recipes as JSON.")) -> None:
    """List the recipes that ship with talkgen, one line each."""
    from talkgen.recipe import list_recipes

    found = list_recipes()
    if as_json:
        import json

        print(json.dumps([{"name": n, "description": d} for n, d in found], indent=2, ensure_ascii=False))
        return
    for name, description in found:
        print(f"{name:10s} {description}")


weights_app = typer.Typer(help="The models talkgen uses: list them, download them, check them.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@weights_app.command("list")
@handles_errors
def weights_list(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """Every model: source, revision, size, licence, present or not, the recipes that use it."""
    import json

    from talkgen.weights import is_present, manifest, size_text

    rows = [{"name": m.name, "kind": m.kind, "source": m.source, "size": size_text(m), "license": m.license,
             "present": is_present(m), "recipes": m.recipes} for m in manifest().values()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console

    from talkgen.tables import print_rows

    print_rows(Console(), ["model", "kind", "source", "size", "licence", "present", "recipes"],
               [[r["name"], r["kind"], r["source"], r["size"], r["license"], "yes" if r["present"] else "no", ", ".join(r["recipes"])]
                for r in rows])


@weights_app.command("pull")
@handles_errors
def weights_pull(
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Pull every model this recipe needs."),
    model: Optional[List[str]] = typer.Option(None, "--model", help="Pull this model (repeatable)."),
) -> None:
    """Download models from their hub, resumably, and check them."""
    from talkgen.errors import UsageError
    from talkgen.weights import for_recipe, manifest, pull

    if not recipe and not model:
        raise UsageError("say what to pull: --recipe NAME or --model NAME")
    models = for_recipe(recipe) if recipe else []
    known = manifest()
    for name in model or []:
        if name not in known:
            raise UsageError(f"unknown model '{name}': talkgen weights list shows them")
        models.append(known[name])
    err = _stderr()
    for m in models:
        if m.bundled:
            err.print(f"{m.name}: bundled in {m.bundled}, nothing to download", highlight=False)
            continue
        err.print(f"{m.name}: pulling {m.source}", highlight=False)
        folder = _pull_with_bar(m, pull, err)
        print(folder)


def _pull_with_bar(model, pull, console):
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   console=console, transient=True, disable=not console.is_terminal)
    tasks: dict[str, int] = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total or None)
        bar.update(tasks[name], completed=done)

    with bar:
        return pull(model, progress)


@weights_app.command("verify")
@handles_errors
def weights_verify() -> None:
    """Re-hash every pulled model against its recorded sha256; exit 1 on any mismatch."""
    from talkgen.weights import is_present, manifest, verify

    problems = []
    for m in manifest().values():
        if m.bundled or is_present(m):
            found = verify(m)
            problems += found
            print(f"{m.name}: {'ok' if not found else 'FAILED'}")
        else:
            print(f"{m.name}: not pulled")
    if problems:
        for line in problems:
            _stderr().print(f"[bold red]error:[/] {line}", highlight=False)
        raise typer.Exit(1)


@app.command()
@handles_errors
def doctor(
    overrides: Optional[List[str]] = typer.Argument(None, help="Recipe overrides such as render.python=/opt/envs/liveavatar/bin/python",
                                                    show_default=False),
    recipe: str = typer.Option("cpu", "--recipe", help="The recipe to check this machine against (name or .yaml path)."),
    job_dir: Path = typer.Option(Path(".talkgen/jobs"), "--job-dir", help="Where jobs will be written (for the free-disk check)."),
    verify: bool = typer.Option(False, "--verify", help="Re-hash the recipe's weights against their sha256 (slow for large models)."),
    save_python: Optional[str] = typer.Option(None, "--save-avatar-python", metavar="PYTHON",
                                              help="Check PYTHON as the avatar's own environment and, if it passes, remember it for "
                                                   "the recipe's avatar back end, so that no command needs render.python=..."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check this machine against a recipe: Python, ffmpeg, weights, the avatar's environment, GPUs, driver, CUDA, disk, cost. Exit 1 on any fail."""
    import json

    from talkgen.doctor import exit_code, run_doctor, save_avatar_env, to_dict
    from talkgen.recipe import load_recipe

    rec = load_recipe(recipe, [*(overrides or []), *([f"render.python={save_python}"] if save_python else [])])
    checks = run_doctor(rec, job_dir, verify_weights=verify)
    if save_python:
        checks.append(save_avatar_env(rec, checks))
    if as_json:
        print(json.dumps(to_dict(rec, checks), indent=2))
    else:
        for c in checks:
            print(f"{c.status:8s}{c.name:11s}{c.detail}" + (f"  -> fix: {c.fix}" if c.fix else ""))
    raise typer.Exit(exit_code(checks))


@app.command()
@handles_errors
def check(
    video: Path = typer.Argument(..., help="The video to check (.mp4 or anything ffmpeg reads)."),
    job_dir: Optional[Path] = typer.Option(None, "--job-dir", help="The render's job directory, to compare the audio with its speech.wav "
                                                  "at every seam (found from VIDEO's report when left out)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Is VIDEO sound? Streams, durations, audio start, frozen frames, lip sync, seams. Exit 0 if so, 1 with reasons."""
    import json

    from talkgen.check import check_video

    result = check_video(video, job_dir)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for f in result.findings:
            status = "fail" if not f.ok else "ok" if f.judged else "skip"  # skip: measured, but not claimed by the back end
            print(f"{status:6s}{f.name:15s}{f.detail}")
        print(f"{video}: {'sound' if result.ok else 'NOT sound: ' + '; '.join(result.reasons)}")
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def version() -> None:
    """Print talkgen's version."""
    from talkgen import __version__

    print(__version__)


def main() -> None:
    # CUDA counts GPUs fastest first unless told otherwise; nvidia-smi, and so the planner and
    # doctor, count them by PCI bus. One order for both, set before anything starts CUDA.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    app(prog_name="talkgen")


if __name__ == "__main__":
    sys.exit(main())

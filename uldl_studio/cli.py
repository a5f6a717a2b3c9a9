"""`uldl-studio` command line: the GUI launchers and the headless subcommands (README, "Command line").

Heavy modules (torch, Qt, pandas) are imported inside the subcommands so that ``--help`` and
error messages are instant: importing this module takes 0.02 s, the training config alone 1.6 s
(it pulls in torch; measured on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import NoReturn, Sequence

FORMAT_CHOICES = ("auto", "ferplus", "rafdb", "affectnet", "fer2013", "csv", "folders", "demo")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _VersionAction(argparse.Action):
    """``--version``: torch is imported only when asked."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def version_text() -> str:
    """``uldl-studio X (torch V, CPU build; CUDA not usable)``: what ``--version`` prints."""
    from uldl_studio import __version__

    try:
        import torch
    except ImportError as exc:
        return f"uldl-studio {__version__} (torch not importable: {exc})"
    if torch.version.cuda:
        build = f"CUDA {torch.version.cuda} build"
    elif getattr(torch.version, "hip", None):
        build = f"ROCm {torch.version.hip} build"
    else:
        build = "CPU build"
    if torch.cuda.is_available():
        cuda = f"CUDA usable: {torch.cuda.device_count()} GPU(s), {torch.cuda.get_device_name(0)}"
    elif torch.version.cuda or getattr(torch.version, "hip", None):
        cuda = "CUDA not usable: no GPU found by the driver"
    else:
        cuda = "CUDA not usable: this torch has no CUDA support"
    return f"uldl-studio {__version__} (torch {torch.__version__}, {build}; {cuda})"


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", dest="fmt", default="auto", choices=FORMAT_CHOICES,
                        help="dataset layout (default: detect)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="first N samples of each split, for quick runs")
    parser.add_argument("--single-label", default="majority", choices=("majority", "sample"),
                        help="FER+: the given label is the crowd majority or one annotator's vote")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uldl-studio",
        description="Uncertainty-aware label distributions for facial-expression datasets.",
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="print the version, the torch build and whether CUDA is usable, and exit")
    sub = parser.add_subparsers(dest="command")

    sub.add_parser("demo", help="GUI on the built-in demo dataset")

    gui = sub.add_parser("gui", help="GUI on a dataset or a run directory")
    gui.add_argument("path", help="dataset folder/CSV or run directory")
    gui.add_argument("--format", dest="fmt", default="auto", choices=FORMAT_CHOICES)
    gui.add_argument("--screenshot", metavar="FILE.png", help="save a picture of the window and exit")

    demo_data = sub.add_parser("demo-data", help="write the demo dataset to disk (generic CSV layout)")
    demo_data.add_argument("out", help="output folder")
    demo_data.add_argument("--n", type=int, default=3000, help="number of samples (default 3000)")
    demo_data.add_argument("--seed", type=int, default=0)

    train = sub.add_parser("train", help="train a model on a dataset (headless)")
    plain_help = train.format_help
    train.format_help = lambda: plain_help() + "\n" + _options_epilog() + "\n"  # torch loads only here
    train.add_argument("data", help="dataset path, or 'demo'")
    train.add_argument("--out", required=True, help="run directory to create or resume")
    _add_data_options(train)
    train.add_argument("--method", default="ldlva", choices=("ldlva", "ce"))
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    train.add_argument("--neighbors", default="bank", choices=("bank", "exact"))
    train.add_argument("--va", default="auto", choices=("auto", "columns", "circumplex", "head"),
                       help="where the samples sit in valence-arousal space: the dataset's columns, the circumplex "
                            "projection of the warm-up's p, or another run's V-A head (--va-from); auto: columns "
                            "when every row has them, else circumplex")
    train.add_argument("--va-from", metavar="RUN", default=None,
                       help="place the samples with RUN's V-A head (RUN was trained on a dataset with valence and "
                            "arousal); implies --va head")
    train.add_argument("--resume", action="store_true", help="continue from the last completed epoch")
    train.add_argument("--label-noise", type=float, default=0.0, metavar="RATE",
                       help="flip this fraction of training labels (benchmarks)")
    train.add_argument("--noise-seed", type=int, default=0)
    train.add_argument("--soft-labels", metavar="FILE.csv", default=None,
                       help="train on these soft labels (a soft-label CSV, joined on sample_id or path)")
    train.add_argument("--folds", type=int, default=0, metavar="K",
                       help="also cross-fit K plain cross-entropy models for the out-of-fold "
                            "self-confidence score (K extra trainings; off by default)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any TrainConfig field, e.g. --set width=32")

    retrain = sub.add_parser("retrain", help="train a new version of a run, with every annotator's votes "
                                             "(the run's other versions are kept)")
    retrain.add_argument("run", help="run directory (its current version is the parent)")
    retrain.add_argument("--epochs", type=int, default=None, help="epochs of the new version (default: the parent's)")
    retrain.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    retrain.add_argument("--folds", type=int, default=0, metavar="K",
                         help="also cross-fit K plain cross-entropy models for the out-of-fold score")
    retrain.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a training option of the parent's configuration, e.g. --set width=32")

    versions = sub.add_parser("versions", help="list the versions of a run")
    versions.add_argument("run", help="run directory")

    evaluate = sub.add_parser("evaluate", help="metrics of a run")
    evaluate.add_argument("run")
    evaluate.add_argument("--json", action="store_true", help="print JSON")

    export = sub.add_parser("export", help="soft labels of the run's dataset, edits applied (with several "
                                           "people's votes: their combined label, and FILE.reliability.json)")
    export.add_argument("run")
    export.add_argument("--out", required=True, metavar="FILE.csv")

    votes = sub.add_parser("votes", help="the people's votes on a run's samples: agreement, each annotator's "
                                         "reliability and the samples that most need another vote")
    votes.add_argument("run", help="run directory")
    votes.add_argument("--top", type=int, default=10, metavar="N", help="samples of the queue to list (default 10)")
    votes.add_argument("--json", action="store_true", help="print the reliabilities as JSON")

    predict = sub.add_parser("predict", help="soft labels for any images: a folder, a CSV of paths, one image, "
                                             "or a dataset in any layout")
    predict.add_argument("run")
    predict.add_argument("data", help="folder of images (searched recursively), CSV with a path column, an "
                                      "image file, a dataset in any layout, or 'demo'")
    predict.add_argument("--out", required=True, metavar="FILE.csv", help="soft-label CSV (or .json) to write")
    predict.add_argument("--format", dest="fmt", default="auto", choices=(*FORMAT_CHOICES, "images"),
                         help="input layout (default: detect; 'images' ignores any labels)")
    predict.add_argument("--limit", type=int, default=None, metavar="N",
                         help="first N images, whatever the layout")
    predict.add_argument("--single-label", default="majority", choices=("majority", "sample"),
                         help="FER+: the source label is the crowd majority or one annotator's vote")
    predict.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    predict.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    predict.add_argument("--faces", default="off", choices=("off", "auto", "detect"),
                         help="detect faces and predict each (detect), only in images much larger than the "
                              "model's input (auto), or use whole images (off, the default)")
    predict.add_argument("--face-margin", type=float, default=None, metavar="F",
                         help="grow each face box by F times its side on every side (default 0.1)")
    predict.add_argument("--tta", action="store_true", help="average p over each image and its mirror image")
    predict.add_argument("--batch-size", type=int, default=256, metavar="N",
                         help="images decoded and predicted per chunk (default 256)")
    predict.add_argument("--adapt", action="append", default=[], choices=("priors", "bn"),
                         help="correct for a collection unlike the run's dataset (repeatable): priors re-weights p "
                              "to the collection's class priors estimated from the predictions; bn re-estimates "
                              "the BatchNorm statistics on its images (AdaBN). The run on disk is not changed. "
                              "priors is for a collection whose class mix differs: read the priors it prints")
    predict.add_argument("--prior-method", default="em", choices=("em", "bbse"),
                         help="--adapt priors: MAP-EM on calibrated p (default) or BBSE with the valid confusion "
                              "matrix")
    cache = sub.add_parser("cache", help="list or clear the decoded-image cache")
    cache.add_argument("action", nargs="?", default="list", choices=("list", "clear"))
    cache.add_argument("match", nargs="?", default=None,
                       help="clear: only entries whose dataset folder or key contains this text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return _guarded(COMMANDS[args.command or "start"], args)


def _guarded(command, args) -> int:
    """Run ``command(args)``; its exit status, with every user error as one clear line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            code = command(args)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
            return code
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        print("uldl-studio: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear line
        if _is_user_error(exc):
            _report_error(f"uldl-studio: error: {_user_message(exc)}")
            return 2
        raise


def _stdout_closed() -> int:
    """The reader of stdout went away (``uldl-studio evaluate RUN | head``): end quietly, as
    Unix tools do, with the status a shell reports for SIGPIPE."""
    try:  # the interpreter flushes stdout at exit: point it at nothing so that cannot fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def _launch_rank() -> int:
    """This process's rank under torchrun (0 outside it)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _report_error(line: str) -> None:
    """Print a user-facing error once: under torchrun every process fails alike, and process 0
    alone prints it (and leaves it in torchrun's error file, so its summary names the cause)."""
    if _launch_rank() != 0:
        return
    print(line, file=sys.stderr)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        try:
            Path(error_file).write_text(json.dumps({"message": line, "timestamp": int(time.time())}))
        except OSError:
            pass


def _is_user_error(exc: Exception) -> bool:
    from uldl_studio.core.table import DatasetError

    return isinstance(exc, (CliError, DatasetError, FileNotFoundError, NotADirectoryError, PermissionError,
                            FileExistsError, IsADirectoryError))


def _user_message(exc: Exception) -> str:
    """One line naming the file and the problem."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
        return f"{exc.filename}: a file is in the way where a folder is needed"
    if isinstance(exc, IsADirectoryError) and exc.filename:
        return f"{exc.filename}: is a folder, not a file"
    if isinstance(exc, PermissionError) and exc.filename:
        return f"{exc.filename}: permission denied"
    return str(exc)


def _count(n: int, noun: str) -> str:
    """``1 row``, ``2 rows``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if _launch_rank() != 0:  # under torchrun every process warns alike: process 0 says it
        return
    print(f"uldl-studio: warning: {message}", file=sys.stderr)


def _cmd_start(args) -> int:
    from uldl_studio.qt.app import run_gui

    return run_gui()


def _cmd_demo(args) -> int:
    from uldl_studio.qt.app import run_gui

    return run_gui(demo=True)


def _cmd_gui(args) -> int:
    from uldl_studio.qt.app import run_gui

    if not Path(args.path).exists() and args.path != "demo":
        raise CliError(f"{args.path}: no such file or folder")
    return run_gui(args.path, screenshot=args.screenshot, fmt=args.fmt)


def _cmd_demo_data(args) -> int:
    from uldl_studio.core.data.datasets.demo import write_demo

    csv_path = write_demo(args.out, n=args.n, seed=args.seed)
    print(f"wrote {_count(args.n, 'demo sample')}: {csv_path}")
    return 0


def _load(args):
    from uldl_studio.core.data.datasets import load_dataset

    if args.data != "demo" and not Path(args.data).exists():
        raise CliError(f"{args.data}: no such file or folder")
    table = load_dataset(args.data, fmt=args.fmt, single_label=args.single_label,
                         seed=args.seed, limit=args.limit)
    _warn_missing_splits(table, args.data)
    return table


def _warn_missing_splits(table, data: str) -> None:
    """Say so when the dataset has no valid or no test samples (e.g. a folders tree with only a
    train/ folder): training then reports no valid accuracy, ``evaluate`` no test metrics."""
    counts = table["split"].value_counts()
    missing = [split for split in ("valid", "test") if not counts.get(split, 0)]
    if missing:
        warnings.warn(f"{data}: no {' and no '.join(missing)} samples ({len(table)} samples, all "
                      f"{', '.join(sorted(counts.index))}): valid accuracy and test metrics are not measured "
                      "for what is missing; add split folders or a split column")


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text",
               "list": "a JSON list such as [32,16]", "dict": "a JSON object such as {\"k\": 1}",
               "None": "null"}


def _option_types(annotation: str) -> list[str]:
    """``"int | None"`` → ``["int", "None"]`` (TrainConfig's annotations are strings)."""
    return [part.strip() for part in str(annotation).split("|")]


def _coerce_option(key: str, text: str, annotation: str):
    """The value of ``--set key=text`` for a field annotated ``annotation``, or a CliError
    naming the option, the value and the expected type."""
    types = _option_types(annotation)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if value is None and "None" in types:
        return None
    if text.strip().lower() in ("none", "null") and "None" in types:
        return None
    for kind in types:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
                return value.lower() in ("true", "yes", "on")
        elif kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif kind == "str":
            return text
        elif kind == "list" and isinstance(value, list):
            return value
        elif kind == "dict" and isinstance(value, dict):
            return value
    expected = " or ".join(_TYPE_WORDS.get(kind, kind) for kind in types)
    raise CliError(f"--set {key}={text}: {key} expects {expected}")


def _parse_overrides(pairs: list[str]) -> dict:
    """``--set KEY=VALUE`` pairs → TrainConfig fields, typed by the field; an unknown key is an
    error that suggests the closest option names."""
    from uldl_studio.core.engine.config import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise CliError(f"--set {pair}: expected KEY=VALUE, e.g. --set width=32")
        key, value = (part.strip() for part in pair.split("=", 1))
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.4)
            hint = (f"did you mean {', '.join(close)}?" if close else
                    "`uldl-studio train --help` lists the options")
            raise CliError(f"--set {pair}: no training option named {key!r}; {hint}")
        overrides[key] = _coerce_option(key, value, fields[key].type)
    return overrides


def _options_epilog() -> str:
    """``train --help``: every ``--set`` option with its default."""
    from uldl_studio.core.engine.config import TrainConfig

    default = TrainConfig()
    names = [f"{f.name}={json.dumps(getattr(default, f.name), ensure_ascii=False)}"
             for f in dataclasses.fields(TrainConfig)]
    return textwrap.fill("--set options (with their defaults): " + ", ".join(names), width=100,
                         break_on_hyphens=False)


def _cmd_train(args) -> int:
    """Train one run; under torchrun every process runs this with the same arguments (rank 0
    creates the run directory and reports progress, the others train their shards silently)."""
    from uldl_studio.core.engine.distributed import Comm

    comm = Comm.from_env(args.device)
    if not comm.distributed:
        return _train(args, comm)
    try:
        code = _guarded(lambda parsed: _train(parsed, comm), args)
    finally:
        comm.close()
    _end_rank(code)


def _end_rank(code: int) -> NoReturn:
    """End a torchrun rank, its group closed and its run written, without the interpreter's
    teardown. DistributedDataParallel keeps the gloo process group alive past
    ``destroy_process_group`` (its worker threads still run after it), and that group's
    destruction while the interpreter shuts down aborts the process now and then
    ("terminate called without an active exception", SIGABRT, after a complete run: 11 of 60
    two-rank launches of a bare DDP job on a busy machine, none with this ending;
    ``bench/rank_exit.py``), which torchrun reports as a failed job."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _train(args, comm) -> int:
    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.engine.recipe import DatasetRecipe
    from uldl_studio.core.engine.run import Run
    from uldl_studio.core.runs import jobs

    run_dir = Path(args.out)
    if args.resume:
        run = Run.open(run_dir)
        _check_resume_data(args.data, run)
        plan = jobs.resume(run, args.epochs, folds=args.folds)  # --epochs: continue to a new total
        checkpoint = run.checkpoint()
        done = int(checkpoint["epoch"]) if checkpoint else 0
        if done >= plan.config.epochs:
            if comm.is_main:
                print(f"{run.path}: already complete ({done} of {plan.config.epochs} epochs), nothing to train; "
                      f"`--resume --epochs N` with N > {done} trains it further")
            return 0
        if comm.is_main:
            print(f"resuming {run.path} after epoch {done} of {plan.config.epochs}" if done else
                  f"{run.path}: no completed epoch to resume from; training from epoch 1 of {plan.config.epochs}",
                  file=sys.stderr)
    else:
        if (run_dir / "config.json").exists():
            raise CliError(f"{run_dir}: already holds a run; train a new version of it with "
                           f"`uldl-studio retrain {run_dir}`, continue it with --resume, or choose another --out")
        fields = dict(method=args.method, device=args.device, seed=args.seed,
                      neighbors=args.neighbors, va=args.va)
        fields.update(_va_from(args))
        if args.epochs is not None:
            fields["epochs"] = args.epochs
        fields.update(_parse_overrides(args.set))
        try:
            config = TrainConfig(**fields)
        except (TypeError, ValueError) as exc:
            raise CliError(f"--set: {exc}") from exc
        if args.data != "demo" and not Path(args.data).exists():
            raise CliError(f"{args.data}: no such file or folder")
        recipe = DatasetRecipe.of(args.data, format=args.fmt, limit=args.limit, single_label=args.single_label,
                                  seed=args.seed, label_noise=args.label_noise, noise_seed=args.noise_seed,
                                  soft_labels=args.soft_labels)
        table = recipe.load()
        _warn_missing_splits(table, args.data)
        plan = jobs.new_run(recipe, config, run_dir, table=table, folds=args.folds)
    report = _consume_with_progress if comm.is_main else _consume_silently
    result = report(jobs.train_job(plan, comm=comm), plan.config)
    if comm.is_main and result.message:
        print(result.message)
    return 0


def _va_from(args) -> dict:
    """``--va-from RUN`` (with ``--va`` auto or head) → the config's va=head, va_from=RUN's path."""
    if args.va_from is None:
        if args.va == "head":
            raise CliError("--va head: name the run whose V-A head places the samples with --va-from RUN")
        return {}
    if args.va not in ("auto", "head"):
        raise CliError(f"--va-from places the samples with another run's V-A head; it cannot be combined with "
                       f"--va {args.va}")
    source = Path(args.va_from)
    if not (source / "config.json").is_file():
        raise CliError(f"--va-from {args.va_from}: not a run directory (no config.json)")
    return {"va": "head", "va_from": str(source.resolve())}


def _consume_silently(job, config):
    """Run ``job`` to its end without a word; its result."""
    from uldl_studio.core.progress import run_to_end

    return run_to_end(job)


def _check_resume_data(data: str, run) -> None:
    """--resume continues a run on the dataset it was trained on; a different DATA is an error."""
    recorded = run.dataset_path()  # DatasetError when the run's dataset moved or was deleted
    if data == "demo" or recorded == "demo":
        same = data == recorded
    else:
        given, recorded_path = Path(data).resolve(), Path(recorded).resolve()
        same = given == recorded_path or given in recorded_path.parents
    if not same:
        raise CliError(f"{data}: --resume continues {run.path} on the dataset it was trained on "
                       f"({recorded}); pass that as DATA, or train a new run with another --out")


def _consume_with_progress(job, config, interactive: bool | None = None):
    """Run the training job ``job`` to its end and return its result, reporting its progress on
    stderr: bars on a terminal; in a log or a pipe, plain lines only (the phase changes and one
    line per epoch), never a bar's redraws."""
    from uldl_studio.core.progress import run_to_end

    if interactive is None:
        interactive = sys.stderr.isatty()
    bar = None
    epoch_seen = None

    def show(progress) -> None:
        nonlocal bar, epoch_seen
        if progress.phase in ("warmup", "train", "load") and progress.batches:
            key = (progress.phase, progress.epoch)
            if key != epoch_seen:
                if bar is not None:
                    bar.close()
                    bar = None
                epoch_seen = key
                if interactive:
                    from tqdm import tqdm

                    label = {"warmup": "warm-up", "load": "decoding"}.get(
                        progress.phase, f"epoch {progress.epoch}/{progress.epochs}")
                    bar = tqdm(total=progress.batches, desc=label, leave=True, file=sys.stderr,
                               unit="img" if progress.phase == "load" else "batch")
                elif progress.phase == "load":
                    print(f"decoding {progress.batches} images into the cache", file=sys.stderr)
            if bar is None:
                return
            bar.update(max(0, progress.batch - bar.n))  # update, not n=: tqdm's rate needs the steps
            if progress.phase != "load":
                postfix = dict(loss=f"{progress.loss:.3f}", acc=f"{progress.accuracy:.3f}")
                if config.method != "ce":  # plain cross-entropy has no λ
                    postfix["lam"] = f"{progress.mean_lambda:.3f}"
                bar.set_postfix(postfix, refresh=False)
                bar.refresh()
        elif progress.message:
            if bar is not None:
                bar.close()
                bar = None
            epoch_seen = None
            print(progress.message, file=sys.stderr)

    try:  # a bar is closed (its line ended) before an error is printed
        return run_to_end(job, show)
    finally:
        if bar is not None:
            bar.close()


def _cmd_retrain(args) -> int:
    """A new version of the run (``core.versions``): the current version's configuration (with
    --epochs, --device, --set), trained on its dataset with the journal's edits applied into
    RUN/versions/vN; it becomes current once all its epochs are trained."""
    from uldl_studio.core.engine.run import Run
    from uldl_studio.core.runs import jobs

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise CliError("retrain runs in one process; under torchrun, start the version with `uldl-studio "
                       "retrain` and continue it with `train --resume --out RUN/versions/vN`")
    if not Path(args.run).is_dir():
        raise CliError(f"{args.run}: no such run directory")
    parent = Run.open(args.run)
    fields = {"device": args.device, **_parse_overrides(args.set)}
    if args.epochs is not None:
        fields["epochs"] = args.epochs
    try:
        config = dataclasses.replace(parent.config, **fields)
    except (TypeError, ValueError) as exc:
        raise CliError(f"--set: {exc}") from exc
    plan = jobs.new_version(parent, config, folds=args.folds)
    result = _consume_with_progress(jobs.train_job(plan), config)
    print(result.message)
    if result.run is not None and not result.current:
        print(f"continue it with `uldl-studio train {parent.dataset_path()} --resume --out {result.run}`")
    return 0


def _cmd_versions(args) -> int:
    from uldl_studio.core.engine.versions import family_root, list_versions

    if not Path(args.run).is_dir():
        raise CliError(f"{args.run}: no such run directory")
    infos = list_versions(args.run)
    print(f"{family_root(args.run)}: {len(infos)} version{'' if len(infos) == 1 else 's'} (* current)")
    for info in infos:
        print(info.describe())
    return 0


def _cmd_evaluate(args) -> int:
    from uldl_studio.core.runs.evaluate import evaluate
    from uldl_studio.core.engine.run import Run

    metrics = evaluate(Run.open(args.run))
    if args.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    else:
        rows = list(_flatten(metrics))
        width = max((len(key) for key, _ in rows), default=0)  # one column of values, whatever the keys
        for key, value in rows:
            print(f"{key:{width}s}  {value:.4f}" if isinstance(value, float) else f"{key:{width}s}  {value}")
    return 0


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _cmd_export(args) -> int:
    from uldl_studio.core.engine.run import Run
    from uldl_studio.core.review.session import Session

    if not Run.open(args.run).has_results:
        raise CliError(f"{args.run}: the run has no completed epoch yet; train it first")
    session = Session.open_run(args.run)
    try:
        written = session.export(args.out)
    finally:
        session.close()
    print(f"wrote {_count(written, 'row')} to {args.out}")
    if session.last_reliability is not None:
        print(f"wrote the annotators' reliabilities to {session.last_reliability}")
    return 0


def _cmd_votes(args) -> int:
    import numpy as np

    from uldl_studio.core.labels.annotations import vote_table
    from uldl_studio.core.engine.run import Run

    run = Run.open(args.run)
    if not run.has_results:
        raise CliError(f"{args.run}: the run has no completed epoch yet; train it first")
    table, votes, consensus = vote_table(run.samples(), run.root)
    n_voters = table["n_voters"].to_numpy()
    print(f"{run.root}: {_count(len(table), 'sample')}, {_count(int(n_voters.sum()), 'vote')} by people "
          f"({_count(int((n_voters > 0).sum()), 'sample')} voted, {int((n_voters >= 2).sum())} by two or more)")
    if consensus is None:
        print("nobody voted yet: relabel samples in the app (each annotator's journal is annotations/<name>.jsonl)")
        return 0
    rel = consensus.reliability
    if args.json:
        print(json.dumps(rel.to_dict(), indent=2))
        return 0
    alpha = "n/a" if not np.isfinite(rel.alpha) else f"{rel.alpha:.3f}"
    print(f"agreement: Krippendorff's alpha (nominal) {alpha}")
    print("  per class: " + ", ".join(f"{c} {'n/a' if not np.isfinite(a) else f'{a:.3f}'}"
                                       for c, a in zip(rel.classes, rel.alpha_per_class)))
    print(f"combined label: the model's calibrated prediction (temperature {rel.temperature:.2f}) counts as "
          f"{rel.prior_strength:.2f} votes, fitted on the valid split's votes")
    width = max(len("source"), *(len(name) for name in rel.sources))
    print(f"{'source':{width}s}  {'votes':>7s}  {'accuracy':>8s}  weakest class")
    for s, name in enumerate(rel.sources):
        weakest = int(np.argmin(rel.class_accuracy[s]))
        print(f"{name:{width}s}  {int(rel.votes_cast[s]):7d}  {rel.accuracy[s]:8.3f}  "
              f"{rel.classes[weakest]} {rel.class_accuracy[s, weakest]:.3f}")
    order = np.argsort(-consensus.next_vote, kind="stable")[:max(args.top, 0)]
    counts = votes.counts()
    if len(order):
        print(f"needs another vote (top {len(order)}): sample, votes, expected change")
        for i in order:
            shown = ", ".join(f"{c} {int(k)}" for c, k in zip(rel.classes, counts[i]) if k > 0) or "none"
            print(f"  {table['sample_id'].iloc[i]}  [{shown}]  {consensus.next_vote[i]:.3f}")
    return 0


def _cmd_cache(args) -> int:
    from uldl_studio.core.data.image_cache import cache_root, clear_caches, list_caches

    root = cache_root()
    if args.action == "clear":
        removed = clear_caches(root, match=args.match)
        for entry in removed:
            print(f"removed {entry.describe()}")
        freed = sum(e.bytes for e in removed) / 2 ** 20
        print(f"{len(removed)} cache entr{'y' if len(removed) == 1 else 'ies'} removed, {freed:.1f} MB freed "
              f"({root})")
        return 0
    entries = list_caches(root)
    print(f"decoded-image cache: {root}")
    for entry in entries:
        print(f"  {entry.describe()}")
    total = sum(e.bytes for e in entries) / 2 ** 20
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {total:.1f} MB"
          + ("" if entries else " (training fills it; `uldl-studio cache clear` empties it)"))
    return 0


def _cmd_predict(args) -> int:
    from tqdm import tqdm

    from uldl_studio.core.data.faces import DEFAULT_MARGIN
    from uldl_studio.core.engine.run import Run
    from uldl_studio.core.runs.jobs import predict_job
    from uldl_studio.core.runs.predict import PredictOptions, Predictor

    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"{out}: the folder {out.parent} does not exist")
    if args.data != "demo" and not Path(args.data).exists():
        raise CliError(f"{args.data}: no such file or folder")
    if args.batch_size < 1:
        raise CliError(f"--batch-size {args.batch_size}: expected a positive number of images")
    options = PredictOptions(faces=args.faces, tta=args.tta, chunk_size=args.batch_size, device=args.device,
                             face_margin=DEFAULT_MARGIN if args.face_margin is None else args.face_margin,
                             adapt=tuple(args.adapt), prior_method=args.prior_method)
    predictor = Predictor(Run.open(args.run), args.device)
    # a bar on a terminal only (disable=None): logs and pipes get the summary lines alone
    bar = tqdm(unit="img", desc="predict", file=sys.stderr, disable=None)

    def show(progress) -> None:
        if progress.phase == "predict":
            bar.total = progress.batches
            bar.n = progress.batch
            bar.refresh()

    from uldl_studio.core.progress import run_to_end

    try:
        result = run_to_end(predict_job(predictor, args.data, out, options, fmt=args.fmt, limit=args.limit,
                                        single_label=args.single_label, seed=args.seed), show)
    finally:
        bar.close()
    for line in result.summary.lines():
        print(line)
    print(f"wrote {_count(len(result.table), 'row')} to {out}")
    return 0


COMMANDS = {
    "start": _cmd_start,
    "demo": _cmd_demo,
    "gui": _cmd_gui,
    "demo-data": _cmd_demo_data,
    "train": _cmd_train,
    "retrain": _cmd_retrain,
    "versions": _cmd_versions,
    "evaluate": _cmd_evaluate,
    "export": _cmd_export,
    "votes": _cmd_votes,
    "predict": _cmd_predict,
    "cache": _cmd_cache,
}

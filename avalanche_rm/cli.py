"""``avalanche-rm`` command line."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional, TypeVar

import typer

T = TypeVar("T")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Continual learning and unlearning on simulated hybrid resistive-memory chips.")


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code=2)


def _prepare_out(out: Optional[Path]) -> Optional[Path]:
    if out is None:
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        _fail(f"--out {str(out)!r} is not writable: {e.strerror or e}")
    return out


def _load_config(path: Optional[Path]) -> dict:
    if path is None:
        return {}
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        _fail(f"--config file {str(path)!r} does not exist")
    except tomllib.TOMLDecodeError as e:
        _fail(f"--config file {str(path)!r} is not valid TOML: {e}")
    return data


def _method_options(pairs: list[str] | None, config: dict) -> dict | None:
    """``--method-option KEY=VALUE`` (repeatable; values parsed as JSON, else taken as strings), or the
    config file's ``method_options`` table."""
    import json

    if not pairs:
        opts = config.get("method_options")
        if opts is not None and not isinstance(opts, dict):
            _fail(f"method_options in the config file must be a table, got {opts!r}")
        return opts
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--method-option must be KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _check_method(method: str, options: dict | None, kinds=("objective",)) -> None:
    from .unlearning import check_method

    try:
        check_method(method, options, kinds)
    except ValueError as e:
        _fail(f"--method: {e}")


def _need_int(option: str, value, minimum: int) -> None:
    from .validation import check_int

    try:
        check_int(value, option, minimum)
    except ValueError as e:
        _fail(str(e))


def _attempt(call: Callable[[], T], errors: tuple[type[Exception], ...] = (ValueError,)) -> T:
    """Run a job; a bad value it reports becomes the one-line error (exit 2), never a traceback."""
    try:
        return call()
    except errors as e:
        _fail(str(e))


def _save(out: Optional[Path], report: dict, plots: Callable[[], dict] | None = None) -> None:
    """With ``--out``: write report.json, report.md and the plots (``plots()`` is only called then)."""
    if out is None:
        return
    from .report import write_report

    write_report(out, report, plots() if plots is not None else None)
    typer.echo(f"\nreport written to {out / 'report.md'}")


def _pick(cli_value, config: dict, key: str, default):
    """CLI value if given, else the config file's, else the default."""
    if cli_value is not None:
        return cli_value
    return config.get(key, default)


def _common(preset, seed, device, out, config):
    from .hardware import list_presets

    preset = _pick(preset, config, "preset", "paper-180nm")
    seed = _pick(seed, config, "seed", 0)
    device = _pick(device, config, "device", "cpu")
    out = _pick(out, config, "out", None)
    if preset not in list_presets():
        _fail(f"unknown preset {preset!r}; choose one of {list_presets()}")
    _need_int("--seed", seed, 0)
    if device not in ("cpu", "cuda"):
        _fail(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            _fail("--device cuda requested but no CUDA device is available")
    return preset, seed, device, _prepare_out(Path(out) if out is not None else None)


PresetOpt = typer.Option(None, help="hardware preset (see `avalanche-rm presets`)")
SeedOpt = typer.Option(None, help="seed for data, training and chip variability (default 0)")
DeviceOpt = typer.Option(None, help="cpu or cuda")
OutOpt = typer.Option(None, help="folder for report.json, report.md and plots")
ConfigOpt = typer.Option(None, help="TOML file setting the same fields (CLI options win)")
QuietOpt = typer.Option(False, help="no progress bars")
MethodOptionOpt = typer.Option(None, "--method-option", help="KEY=VALUE option of the unlearning method (repeatable)")


@app.command()
def demo(
    preset: Optional[str] = PresetOpt,
    seed: Optional[int] = SeedOpt,
    epochs: Optional[int] = typer.Option(None, help="pre-training epochs of the base (default 30)"),
    adapter_epochs: Optional[int] = typer.Option(None, help="epochs per learning experience (default 10)"),
    unlearn_epochs: Optional[int] = typer.Option(None, help="max epochs of approximate unlearning (default 40)"),
    method: Optional[str] = typer.Option(None, help="approximate unlearning objective of the hybrid and full-weight "
                                                    "strategies (default neg_ce; see avalanche_rm.unlearning)"),
    method_option: Optional[list[str]] = MethodOptionOpt,
    device: Optional[str] = DeviceOpt,
    out: Optional[Path] = OutOpt,
    config: Optional[Path] = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """The main job on bundled digits: public base, new classes on adapters, two forget requests, baselines."""
    from .jobs.demo import format_demo, run_demo

    cfg = _load_config(config)
    preset, seed, device, out = _common(preset, seed, device, out, cfg)
    ep = _pick(epochs, cfg, "epochs", 30)
    aep = _pick(adapter_epochs, cfg, "adapter_epochs", 10)
    uep = _pick(unlearn_epochs, cfg, "unlearn_epochs", 40)
    for name, v in (("--epochs", ep), ("--adapter-epochs", aep), ("--unlearn-epochs", uep)):
        _need_int(name, v, 1)
    meth = _pick(method, cfg, "method", "neg_ce")
    opts = _method_options(method_option, cfg)
    _check_method(meth, opts)
    rep, figs = _attempt(lambda: run_demo(preset=preset, seed=seed, epochs=ep, adapter_epochs=aep,
                                          unlearn_epochs=uep, method=meth, method_options=opts, device=device,
                                          progress=not quiet))
    typer.echo(format_demo(rep))
    _save(out, rep, lambda: figs)


@app.command()
def basic(
    preset: Optional[str] = PresetOpt,
    seed: Optional[int] = SeedOpt,
    epochs: Optional[int] = typer.Option(None, help="software pre-training epochs (default 40)"),
    adapter_epochs: Optional[int] = typer.Option(None, help="LoRA calibration epochs (default 15)"),
    device: Optional[str] = DeviceOpt,
    out: Optional[Path] = OutOpt,
    config: Optional[Path] = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Software MLP -> programmed chip -> LoRA calibration -> drift (bundled digits)."""
    from .jobs.basic import basic_plots, basic_report, format_basic_report, run_basic_job

    cfg = _load_config(config)
    preset, seed, device, out = _common(preset, seed, device, out, cfg)
    ep, aep = _pick(epochs, cfg, "epochs", 40), _pick(adapter_epochs, cfg, "adapter_epochs", 15)
    _need_int("--epochs", ep, 1)
    _need_int("--adapter-epochs", aep, 0)
    rep = _attempt(lambda: run_basic_job(preset=preset, seed=seed, epochs=ep, adapter_epochs=aep, device=device,
                                         progress=not quiet))
    typer.echo(format_basic_report(rep))
    if out is not None:
        _save(out, basic_report(rep, seed), lambda: basic_plots(rep))


@app.command()
def cost(
    model: str = typer.Option("mlp", help="mlp, mlp512, cnn, or package.module:factory returning (module, input_shape)"),
    batch: int = typer.Option(32, help="samples per measured batch"),
    rank: int = typer.Option(4, help="LoRA rank for the adapter rows"),
    preset: Optional[str] = PresetOpt,
    seed: Optional[int] = SeedOpt,
    device: Optional[str] = DeviceOpt,
    out: Optional[Path] = OutOpt,
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Price a model on a preset: programming, training per sample, inference per sample."""
    from .jobs.cost import cost_plots, format_cost, run_cost

    cfg = _load_config(config)
    preset, seed, device, out = _common(preset, seed, device, out, cfg)
    _need_int("--batch", batch, 1)
    _need_int("--rank", rank, 1)
    rep = _attempt(lambda: run_cost(model=model, preset=preset, seed=seed, batch=batch, rank=rank, device=device))
    typer.echo(f"{model} on {preset} ({rep['cells']} analogue cells); {rep['data']}\n")
    typer.echo(format_cost(rep))
    _save(out, rep, lambda: cost_plots(rep))


@app.command()
def fl(
    clients: int = typer.Option(5, help="number of clients (one simulated chip each)"),
    rounds: int = typer.Option(5, help="federated rounds"),
    forget_client: int = typer.Option(2, help="partition whose owner asks to be forgotten"),
    forget_round: int = typer.Option(3, help="round after which the request arrives"),
    ray: bool = typer.Option(False, help="run on Flower's Ray simulation engine (default: in-process grid)"),
    shards: int = typer.Option(3, help="adapter shards per client (exact sample-level unlearning needs >= 1)"),
    sample_methods: str = typer.Option("exact,neg_ce", help="methods of the two sample-level forget requests"),
    method_option: Optional[list[str]] = MethodOptionOpt,
    replay: bool = typer.Option(True, help="exact requests whose data reached earlier rounds replay those rounds "
                                           "(--no-replay: recorded as approximate)"),
    audit_key_file: Optional[Path] = typer.Option(None, help="the controller's audit key for --out/audit.jsonl "
                                                             "(default: a new one, written to --out/audit.key)"),
    preset: Optional[str] = PresetOpt,
    seed: Optional[int] = SeedOpt,
    device: Optional[str] = DeviceOpt,
    out: Optional[Path] = OutOpt,
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Federated learning with a federated forget request (bundled digits)."""
    from .jobs.fl import run_fl
    from .report import markdown_table

    cfg = _load_config(config)
    preset, seed, device, out = _common(preset, seed, device, out, cfg)
    methods = tuple(m.strip() for m in sample_methods.split(","))
    if len(methods) != 2 or not all(methods):
        _fail(f"--sample-methods must name two methods separated by a comma, got {sample_methods!r}")
    opts = _method_options(method_option, cfg)
    for m in methods:
        _check_method(m, opts if m != "exact" else None, ("objective", "sisa"))
    audit = out / "audit.jsonl" if out is not None else None
    key = None
    if audit is not None:
        from .unlearning import AuditKey

        if audit_key_file is not None:
            key = _attempt(lambda: AuditKey.load(audit_key_file))
        else:
            key = AuditKey.generate()
            key.save(out / "audit.key")
            typer.echo(f"a new audit key for {audit} is in {out / 'audit.key'} (keep it with the data controller)")
    rep, figs = _attempt(lambda: run_fl(preset=preset, seed=seed, clients=clients, rounds=rounds,
                                        forget_client=forget_client, forget_round=forget_round, ray=ray,
                                        shards=shards, sample_methods=methods, method_options=opts, replay=replay,
                                        audit_path=audit, audit_key=key, device=device))
    typer.echo(f"data: {rep['data']}; engine: {rep['engine']}\n")
    typer.echo(markdown_table(rep["tables"]["rounds"]))
    typer.echo(markdown_table(rep["tables"]["forget request"]))
    typer.echo(markdown_table(rep["tables"]["sample forget requests"]))
    typer.echo(markdown_table(rep["tables"]["inference per sample"]))
    typer.echo("\nfederation audit log" + (f" ({audit})" if audit else "") + ":")
    for line in rep["audit_log"]:
        typer.echo(line)
    _save(out, rep, lambda: figs)


@app.command()
def faults(
    epochs: int = typer.Option(40, help="software training epochs"),
    calib_epochs: int = typer.Option(5, help="calibration-adapter epochs per condition"),
    preset: Optional[str] = PresetOpt,
    seed: Optional[int] = SeedOpt,
    device: Optional[str] = DeviceOpt,
    out: Optional[Path] = OutOpt,
    config: Optional[Path] = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Accuracy vs stuck-at faults, drift and programming noise; LoRA drift compensation vs reprogramming."""
    from .jobs.faults import run_faults
    from .report import markdown_table

    cfg = _load_config(config)
    preset, seed, device, out = _common(preset, seed, device, out, cfg)
    rep, figs = _attempt(lambda: run_faults(preset=preset, seed=seed, epochs=epochs, calib_epochs=calib_epochs,
                                            progress=not quiet, device=device))
    typer.echo(f"data: {rep['data']}; software accuracy {rep['software_accuracy']:.4f}\n")
    for name, rows in rep["tables"].items():
        typer.echo(f"{name}\n{markdown_table(rows)}")
    _save(out, rep, lambda: figs)


@app.command()
def scenario(
    name: str = typer.Argument(..., help="faces, speakers or generation"),
    data: Optional[Path] = typer.Option(None, help="real data: olivettifaces.mat (faces), an FSDD recordings "
                                                   "folder or ssc_train.h5 (speakers); default: offline stand-in"),
    epoch_scale: Optional[float] = typer.Option(None, help="multiply every recipe's epochs (default 1 = reference)"),
    noise_runs: Optional[int] = typer.Option(None, help="Monte-Carlo draws per write-noise sigma (default 100; 0 skips)"),
    noise_sigmas: Optional[str] = typer.Option(None, help="comma-separated write-noise sigmas in uS (default 1,...,10)"),
    calibration_sigma: Optional[float] = typer.Option(None, help="write noise (uS) the calibration adapter repairs (default 2)"),
    hidden: Optional[int] = typer.Option(None, help="hidden width (speakers: 512, generation: 128 by default)"),
    composition: Optional[str] = typer.Option(None, help="faces: 'summed' (both adapters active while learning "
                                                         "the new person, default) or 'switched' (the reference code)"),
    method: Optional[str] = typer.Option(None, help="unlearning objective instead of the recipe's (faces: neg_ce, "
                                                    "speakers: random_label, generation: random_target)"),
    method_option: Optional[list[str]] = MethodOptionOpt,
    preset: Optional[str] = PresetOpt,
    seed: Optional[int] = SeedOpt,
    device: Optional[str] = DeviceOpt,
    out: Optional[Path] = OutOpt,
    config: Optional[Path] = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """The reference's scenarios: hybrid LoRA vs full-weight baseline, noise sweeps, calibration."""
    from .jobs.scenario import SCENARIOS, run_scenario
    from .report import markdown_table
    from .scenarios.report import scenario_plots

    cfg = _load_config(config)
    preset, seed, device, out = _common(preset, seed, device, out, cfg)
    if name not in SCENARIOS:
        _fail(f"unknown scenario {name!r}; choose one of {list(SCENARIOS)}")
    scale = _pick(epoch_scale, cfg, "epoch_scale", 1.0)
    runs = _pick(noise_runs, cfg, "noise_runs", 100)
    sig = _pick(noise_sigmas, cfg, "noise_sigmas", "1,2,3,4,5,6,7,8,9,10")
    calib = _pick(calibration_sigma, cfg, "calibration_sigma", 2.0)
    hid = _pick(hidden, cfg, "hidden", None)
    data = _pick(data, cfg, "data", None)
    comp = _pick(composition, cfg, "composition", "summed")
    meth = _pick(method, cfg, "method", None)
    opts = _method_options(method_option, cfg)
    if opts and meth is None:
        _fail("--method-option needs --method (the recipe's own objective keeps the reference's options)")
    if meth is not None:
        _check_method(meth, opts)
    if comp not in ("summed", "switched"):
        _fail(f"--composition must be summed or switched, got {comp!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        _fail(f"--epoch-scale must be a number > 0, got {scale!r}")
    _need_int("--noise-runs", runs, 0)
    if hid is not None:
        _need_int("--hidden", hid, 1)
    try:
        sigmas = tuple(float(s) for s in str(sig).split(",") if s.strip())
    except ValueError:
        _fail(f"--noise-sigmas must be comma-separated numbers, got {sig!r}")
    if not sigmas or any(not 0 <= s < float("inf") for s in sigmas):
        _fail(f"--noise-sigmas must be finite numbers >= 0, got {sig!r}")
    if isinstance(calib, bool) or not isinstance(calib, (int, float)) or not 0 <= calib < float("inf"):
        _fail(f"--calibration-sigma must be a finite number >= 0, got {calib!r}")
    rep = _attempt(lambda: run_scenario(name, data=data, preset=preset, seed=seed, device=device,
                                        epoch_scale=float(scale), noise_runs=runs, noise_sigmas_us=sigmas,
                                        calibration_sigma_us=float(calib), hidden=hid, composition=comp,
                                        method=meth, method_options=opts, progress=not quiet),
                   (ValueError, FileNotFoundError, RuntimeError))
    typer.echo(f"data: {rep['data']}\n")
    for tname, rows in rep["tables"].items():
        if tname == "write-noise sweep":
            rows = [r for r in rows if r["metric"] == "overall"]
            tname += " (overall accuracy; report.json has forget/retain/new)"
        typer.echo(f"{tname}\n{markdown_table(rows)}")
    _save(out, rep, lambda: scenario_plots(rep))


@app.command()
def paper(
    delta_g: Optional[float] = typer.Option(None, help="mean |dG| (uS) of a fine-tuning update to deploy (default 0.5, "
                                                       "the reference's measured full-weight unlearning)"),
    spike_density: Optional[float] = typer.Option(None, help="input spike density for the speaker network (default 0.2)"),
    window: Optional[int] = typer.Option(None, help="full-weight training steps simulated per task (default 16): "
                                                    "write-backs per step are averaged over them"),
    preset: Optional[str] = PresetOpt,
    seed: Optional[int] = SeedOpt,
    device: Optional[str] = DeviceOpt,
    out: Optional[Path] = OutOpt,
    config: Optional[Path] = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """The reference's three headline ratios (147.76x / 387.95x / 48.44x) from first principles, published vs ours."""
    from .jobs.paper import format_paper, paper_plots, run_paper

    cfg = _load_config(config)
    preset, seed, device, out = _common(preset, seed, device, out, cfg)
    dg = _pick(delta_g, cfg, "delta_g", 0.5)
    dens = _pick(spike_density, cfg, "spike_density", 0.2)
    win = _pick(window, cfg, "window", None)  # None: the job's own default
    rep = _attempt(lambda: run_paper(preset=preset, seed=seed, delta_g_us=float(dg), spike_density=float(dens),
                                     device=device, progress=not quiet, window=win), (ValueError, TypeError))
    typer.echo(format_paper(rep))
    _save(out, rep, lambda: paper_plots(rep))


@app.command()
def fidelity(
    seeds: int = typer.Option(5, help="programming seeds per network and preset"),
    faces: Optional[Path] = typer.Option(None, help="olivettifaces.mat for the face MLP-Mixer (default: digits stand-in)"),
    adc_range: str = typer.Option("calibrated", help="calibrated, or worst_case (the never-clipping ADC ranges)"),
    seed: Optional[int] = SeedOpt,
    out: Optional[Path] = OutOpt,
    config: Optional[Path] = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Programmed-chip accuracy vs software per preset, and a 256x256 layer's output error."""
    from .jobs.fidelity import run_fidelity
    from .report import markdown_table

    cfg = _load_config(config)
    _, seed, _, out = _common(None, seed, None, out, cfg)
    _need_int("--seeds", seeds, 1)
    if adc_range not in ("calibrated", "worst_case"):
        _fail(f"--adc-range must be calibrated or worst_case, got {adc_range!r}")
    rep = _attempt(lambda: run_fidelity(seeds=seeds, faces_path=faces, seed=seed, adc_range=adc_range,
                                        progress=not quiet), (ValueError, FileNotFoundError, RuntimeError))
    typer.echo(f"data: {rep['data']}\n")
    for name, rows in rep["tables"].items():
        typer.echo(f"{name}\n{markdown_table(rows)}")
    _save(out, rep)


@app.command()
def stability(
    faces: Optional[Path] = typer.Option(None, help="olivettifaces.mat (real faces; needed offline)"),
    seeds: int = typer.Option(5, help="chips (programming and adapter seeds) per learner and preset"),
    epochs: int = typer.Option(40, help="training epochs per experience"),
    out: Optional[Path] = OutOpt,
    quiet: bool = QuietOpt,
) -> None:
    """LoRA continual learning on the chip vs the ideal preset (HybridLoRA and stock Replay), and the collapse
    without class masking."""
    from .jobs.stability import run_stability
    from .report import markdown_table

    _need_int("--seeds", seeds, 1)
    _need_int("--epochs", epochs, 1)
    out = _prepare_out(out)
    rep = _attempt(lambda: run_stability(faces, seeds=seeds, epochs=epochs, progress=not quiet),
                   (ValueError, FileNotFoundError, RuntimeError))
    typer.echo(f"data: {rep['data']}\n")
    for name, rows in rep["tables"].items():
        typer.echo(f"{name}\n{markdown_table(rows)}")
    _save(out, rep)


audit_app = typer.Typer(no_args_is_help=True, help="Tamper-evident logs: check the chain, MACs and head.")
checkpoint_app = typer.Typer(no_args_is_help=True, help="Checkpoints of forgetting strategies.")
keys_app = typer.Typer(no_args_is_help=True, help="Signing keys of owners and controllers, a learner's key directory.")
app.add_typer(audit_app, name="audit")
app.add_typer(checkpoint_app, name="checkpoint")
app.add_typer(keys_app, name="keys")
KeyFileOpt = typer.Option(..., help="the data controller's audit key (JSON key file)")


@audit_app.command("verify")
def audit_verify(
    files: list[Path] = typer.Argument(..., help="audit log(s), forgotten-ids store(s) or federation log(s)"),
    key_file: Path = KeyFileOpt,
) -> None:
    """Check every line's MAC, number and previous hash and the head; exit 1 naming the first bad line."""
    from .jobs.audit import verify_files

    results = _attempt(lambda: verify_files(files, key_file))
    for r in results:
        typer.echo(r.message(), err=not r.ok)
    if not all(r.ok for r in results):
        raise typer.Exit(code=1)


@checkpoint_app.command("scrub")
def checkpoint_scrub(
    checkpoints: list[Path] = typer.Argument(..., help="checkpoint files written by save_checkpoint"),
    store: Path = typer.Option(..., help="the forgotten-ids store (<audit>.forgotten.jsonl)"),
    key_file: Path = KeyFileOpt,
    audit: Optional[Path] = typer.Option(None, help="audit log for the re-applications (default: beside the store)"),
    delete: bool = typer.Option(False, help="delete the checkpoints instead of rewriting them"),
) -> None:
    """Re-apply to older checkpoints every request made after them (each rewritten atomically), or delete them."""
    from .jobs.audit import scrub_files

    for r in _attempt(lambda: scrub_files(checkpoints, store, key_file, audit, delete)):
        if r["action"] == "deleted":
            typer.echo(f"{r['checkpoint']}: deleted")
        else:
            typer.echo(f"{r['checkpoint']}: {r['reapplied']} request(s) re-applied, {r['samples_forgotten']} "
                       "sample(s) forgotten, rewritten")


@keys_app.command("init")
def keys_init(
    folder: Path = typer.Argument(..., help="folder for trust.json, the private keys and audit.key"),
    audience: str = typer.Option(..., help="the learner's or federation's name (requests are signed for it)"),
    owners: str = typer.Option("", help="owner ids, comma-separated (e.g. 0,1,2)"),
    controllers: str = typer.Option("", help="data controller names, comma-separated"),
) -> None:
    """Fresh keys: a public key directory for the learner, a private key per principal, the audit key."""
    from .jobs.audit import init_keys

    try:
        ids = [int(o) for o in owners.split(",") if o.strip()]
    except ValueError:
        _fail(f"--owners must be comma-separated ints, got {owners!r}")
    names = [c.strip() for c in controllers.split(",") if c.strip()]
    for what, path in _attempt(lambda: init_keys(folder, audience, ids, names)).items():
        typer.echo(f"{what}: {path}")


@app.command()
def presets() -> None:
    """List hardware presets and their sources."""
    from .hardware import get_preset, list_presets

    for name in list_presets():
        hw = get_preset(name)
        typer.echo(f"{name}: {hw.crossbar.rows}x{hw.crossbar.cols} {hw.crossbar.mapping}, "
                   f"{hw.device.g_min_us}-{hw.device.g_max_us} uS, {hw.digital.tech_node_nm:g} nm\n  source: {hw.source}\n")


def main() -> None:
    from .quiet import silence_known_noise

    silence_known_noise()  # third-party notices known to be noise (listed in avalanche_rm/quiet.py); nothing else
    try:
        import logging

        from tqdm.contrib.logging import logging_redirect_tqdm

        # log lines (ours and Flower's) print above progress bars, never through them
        with logging_redirect_tqdm(loggers=[logging.root, logging.getLogger("flwr")]):
            app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

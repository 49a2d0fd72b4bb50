"""``avalanche-rm`` command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
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


@app.command()
def demo(
    preset: str = typer.Option("paper-180nm", help="hardware preset (see `avalanche-rm presets`)"),
    seed: int = typer.Option(0, help="seed for data split, training and chip variability"),
    epochs: int = typer.Option(40, help="software pre-training epochs"),
    adapter_epochs: int = typer.Option(15, help="LoRA calibration epochs"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    out: Optional[Path] = typer.Option(None, help="folder for report.json"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """The main job on scikit-learn's bundled digits (no network)."""
    from .hardware import list_presets
    from .jobs.basic import format_basic_report, run_basic_job

    if preset not in list_presets():
        _fail(f"unknown preset {preset!r}; choose one of {list_presets()}")
    if epochs < 1:
        _fail(f"--epochs must be >= 1, got {epochs}")
    if adapter_epochs < 0:
        _fail(f"--adapter-epochs must be >= 0, got {adapter_epochs}")
    if device not in ("cpu", "cuda"):
        _fail(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            _fail("--device cuda requested but no CUDA device is available")
    out = _prepare_out(out)
    try:
        rep = run_basic_job(preset=preset, seed=seed, epochs=epochs, adapter_epochs=adapter_epochs, device=device,
                            progress=not quiet)
    except ValueError as e:
        _fail(str(e))
    typer.echo(format_basic_report(rep))
    if out is not None:
        (out / "report.json").write_text(json.dumps(rep, indent=2, default=str))
        typer.echo(f"\nreport written to {out / 'report.json'}")


@app.command()
def presets() -> None:
    """List hardware presets and their sources."""
    from .hardware import get_preset, list_presets

    for name in list_presets():
        hw = get_preset(name)
        typer.echo(f"{name}: {hw.crossbar.rows}x{hw.crossbar.cols} {hw.crossbar.mapping}, "
                   f"{hw.device.g_min_us}-{hw.device.g_max_us} uS, {hw.digital.tech_node_nm:g} nm\n  source: {hw.source}\n")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

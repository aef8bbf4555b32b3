"""Progress (one tqdm mechanism, --quiet, one epoch-line format) and the plots of a run."""

from __future__ import annotations

import io
import json
import re
import sys

import numpy as np
import pytest

from atomsets_tf.cli import main
from atomsets_tf.training.callbacks import EPOCH_LINE
from atomsets_tf.training.metrics import roc_auc
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.utils import plots
from atomsets_tf.utils.progress import progress_bar, reporting_bar, track
from atomsets_tf.workflows.fit import fit
from atomsets_tf.workflows.retrain import retrain

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TWO_EPOCHS = TrainingConfig(epochs=2, patience=2, batch_size=32)
BAR = re.compile(r"\d+%\|")  # tqdm's "50%|" (the bar itself)


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def steels():
    from atomsets_tf.data.io import load

    return load("matbench_steels").subset(range(120))


def draw_bars(enabled: bool) -> None:
    with progress_bar(3, "folds", "fold", enabled) as bar:
        bar.update(2)
    list(track(range(2), desc="items", enabled=enabled))


def test_bars_are_silent_off_a_terminal_and_when_disabled(monkeypatch):
    for stream, enabled, shown in ((io.StringIO(), True, False), (Terminal(), False, False), (Terminal(), True, True)):
        monkeypatch.setattr(sys, "stderr", stream)
        draw_bars(enabled)
        assert bool(BAR.search(stream.getvalue())) == shown, (type(stream).__name__, enabled, stream.getvalue())


def test_reporting_bar_passes_lines_on_and_shows_them(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    lines = []
    with reporting_bar(2, "steels dummy", "fold", lines.append) as step:
        step("steels dummy fold 0: test mae 12.5 (3 epochs, 1 s)")
    assert lines == ["steels dummy fold 0: test mae 12.5 (3 epochs, 1 s)"]
    assert "1/2" in sys.stderr.getvalue() and "fold 0: test mae 12.5" in sys.stderr.getvalue()
    with reporting_bar(2, "x", "fold", None) as step:
        assert step is None


def test_quiet_cli_commands_print_no_progress(tmp_path, monkeypatch, capsys):
    args = {"fit": ["fit", "matbench_steels", "--model", "atomsets-v0", "--epochs", "2"],
            "benchmark": ["benchmark", "matbench_steels", "--model", "dummy", "--folds", "0,1"]}
    for name, command in args.items():
        for quiet in (False, True):
            terminal = Terminal()
            monkeypatch.setattr(sys, "stderr", terminal)
            out = tmp_path / f"{name}-{quiet}"
            assert main([*command, *(["--quiet"] if quiet else []), "-o", str(out)]) == 0
            stdout, progress = capsys.readouterr().out, terminal.getvalue()
            if name == "fit":
                epoch_lines = [ln for ln in progress.splitlines() if ln.startswith("epoch ")]
                assert len(epoch_lines) == (0 if quiet else 2), progress
            else:
                assert bool(BAR.search(progress)) != quiet, progress
                assert ("fold 1: test mae" in stdout) != quiet, stdout
            assert "Wrote" in stdout  # the results are printed either way


def epoch_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("epoch ")]


def skeleton(line: str) -> str:
    """The line without its numbers: the fields and their order."""
    return re.sub(r"\(best \S+\)", "(best N)", re.sub(r"(?<= )[-+.\deE]+(?=\s|$)|\d+/\d+", "N", line))


def test_epoch_lines_share_one_format_for_fit_and_retrain(tmp_path, steels, capsys):
    fit(steels, "atomsets-v0", training=TWO_EPOCHS, out_dir=tmp_path / "fit", progress=True)
    lines = {"fit": epoch_lines(capsys.readouterr().err)}
    for mode, factor in (("head", 1.0), ("full", 0.5)):
        retrain(tmp_path / "fit" / "model.keras", steels, mode, training=TWO_EPOCHS, backbone_lr_factor=factor,
                out_dir=tmp_path / mode, progress=True)
        lines[mode] = epoch_lines(capsys.readouterr().err)
    for name, found in lines.items():
        assert len(found) == 2 and all(re.match(EPOCH_LINE, ln) for ln in found), (name, found)
    assert len({skeleton(ln) for found in lines.values() for ln in found}) == 1, lines
    assert lines["fit"][0].startswith("epoch 1/2  loss ") and " val_mae " in lines["fit"][0]


def assert_png(path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000, path


def test_plots_after_a_two_epoch_fit_and_a_benchmark(tmp_path, steels):
    out = tmp_path / "run"
    fit(steels, "atomsets-v0", training=TWO_EPOCHS, out_dir=out, progress=False)
    recorded = json.loads((out / "metrics.json").read_text())["plots"]
    assert recorded == {"parity": "parity.png", "training_curve": "training_curve.png"}
    for name in recorded.values():
        assert_png(out / name)
    assert not (out / "roc.png").exists()
    assert main(["benchmark", "matbench_steels", "--model", "dummy", "--folds", "0,1", "--quiet",
                 "-o", str(tmp_path / "bench")]) == 0
    summary = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert summary["plots"] == {"parity": "parity.png"}
    assert_png(tmp_path / "bench" / "parity.png")


def test_roc_of_a_classifier(tmp_path):
    from atomsets_tf.data.io import load

    out = tmp_path / "run"
    fit(load("matbench_expt_is_metal").subset(range(200)), "atomsets-v0", training=TWO_EPOCHS, out_dir=out,
        progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["plots"] == {"roc": "roc.png", "training_curve": "training_curve.png"}
    assert_png(out / "roc.png")
    assert not (out / "parity.png").exists()
    # the plotted curve's area is the package's ROC-AUC (ties included)
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 300), rng.integers(0, 20, 300) / 20
    fpr, tpr, auc = plots.roc_curve(labels, scores)
    assert auc == pytest.approx(roc_auc(labels, scores), abs=1e-12)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)


def test_without_matplotlib_the_run_succeeds_without_plots(tmp_path, steels, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match=re.escape('pip install "atomsets-tf[plot]"')):
        result = fit(steels, "atomsets-v0", training=TWO_EPOCHS, out_dir=out, progress=False)
    assert np.isfinite(result.metrics["test_mae"]) and (out / "model.keras").is_file()
    assert json.loads((out / "metrics.json").read_text())["plots"] == {}
    assert not list(out.glob("*.png"))

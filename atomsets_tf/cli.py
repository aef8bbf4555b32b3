"""The ``atomsets-tf`` command line: a thin shell over the Python API.

Bad input ends with one line ``Error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from atomsets_tf._version import __version__  # noqa: E402
from atomsets_tf.data.targets import OUTPUT_KINDS  # noqa: E402  (plain data: no TensorFlow)
from atomsets_tf.errors import IntervalError  # noqa: E402
from atomsets_tf.models.registry import BENCHMARK_MODELS, FIT_MODELS  # noqa: E402  (plain data: no TensorFlow)
from atomsets_tf.utils.intervals import parse_save_interval  # noqa: E402  (plain: no TensorFlow)
from atomsets_tf.utils.startup import import_tensorflow_quietly  # noqa: E402

EXIT_BAD_INPUT = 2


class ModelChoice(click.Choice):
    """A ``--model`` choice of the zoo's names, read from the registry on every use: a family registered after
    this module was imported (a plugin, a user's own) is among them."""

    def __init__(self, names) -> None:
        self._names = names
        super().__init__((), case_sensitive=True)

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names)

    @choices.setter
    def choices(self, _value) -> None:  # click.Choice.__init__ sets it; the names stay the registry's
        pass


class SaveIntervalType(click.ParamType):
    """``--checkpoint-every``: checked by :func:`~atomsets_tf.utils.intervals.parse_save_interval`, passed on as
    given."""

    name = "INTERVAL"

    def convert(self, value, param, ctx):
        try:
            parse_save_interval(str(value))
        except IntervalError as exc:
            self.fail(str(exc), param, ctx)
        return str(value).strip()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atomsets-tf")
def cli() -> None:
    """AtomSets transfer learning with graph networks (Keras 3 / TensorFlow)."""


def _without_tensorflow(command):
    """Mark a command that runs no TensorFlow (``main`` does not import it first); every other command does."""
    command.without_tensorflow = True
    return command


def _with_options(command, options: list):
    """``command`` decorated with ``options``, listed in --help in their order."""
    for option in reversed(options):
        command = option(command)
    return command


def _training_options(command):
    """The options ``fit`` and ``retrain`` share: split, optimisation, strategy, output."""
    options = [
        click.option("--target", default=None, metavar="NAME",
                     help="The target: a CSV column, or an ASE file's info key or calculator result such as energy "
                          "(default: the one numeric column or value the data has)."),
        click.option("--task-type", type=click.Choice(["regression", "classification"]), default=None,
                     help="Inferred from the targets when omitted."),
        click.option("--protocol", type=click.Choice(["paper", "matbench"]), default="paper", show_default=True,
                     help="paper: random 80/10/10 split; matbench: an official fold."),
        click.option("--fold", type=click.IntRange(0), default=0, show_default=True, help="Which split or fold."),
        click.option("--val-fraction", type=click.FloatRange(0, 0.5, min_open=True, max_open=True), default=0.1,
                     show_default=True, help="Validation (and, for the paper protocol, test) fraction."),
        click.option("--split-file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help='JSON {"train": [ids], "val": [ids], "test": [ids]} ("val" optional).'),
        click.option("--epochs", type=click.IntRange(1), default=1000, show_default=True),
        click.option("--patience", type=click.IntRange(1), default=200, show_default=True,
                     help="Epochs without a better validation metric before stopping."),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Global batch size."),
        click.option("--steps-per-epoch", type=click.IntRange(1), default=None,
                     help="Batches per epoch (default: one pass over the training set; useful on a large "
                          "prepared dataset)."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True),
        click.option("--loss", type=click.Choice(["mae", "mse", "robust_l1"]), default="mae", show_default=True,
                     help="robust_l1: CGAT's loss with its predicted log-std (CGAT models only)."),
        click.option("--optimizer", type=click.Choice(["adam", "adamw"]), default="adam", show_default=True),
        click.option("--weight-decay", type=click.FloatRange(0), default=1e-6, show_default=True,
                     help="AdamW's weight decay."),
        click.option("--schedule", type=click.Choice(["constant", "cyclical", "cosine"]), default="constant",
                     show_default=True, help="Learning-rate schedule; cyclical is the CGAT paper's triangular 0.1-1."),
        click.option("--schedule-period", type=click.IntRange(2), default=130, show_default=True,
                     help="Period of the cyclical schedule, in epochs."),
        click.option("--mixed-precision", type=click.Choice(["mixed_float16", "mixed_bfloat16"]), default=None,
                     help="Build and train the model under a Keras mixed-precision policy."),
        click.option("--stream-above", type=click.IntRange(0), default=None, metavar="N",
                     help="A prepared dataset (atomsets-tf prepare) with more than N entries streams from its shards "
                          "(0: always); a smaller one is read into memory and trains as the file it was prepared "
                          "from. Default: 200000. --bootstrap needs the training set in memory."),
        click.option("--input-pipelines", type=click.IntRange(1), default=1, show_default=True, metavar="K",
                     help="Read a streamed prepared dataset as K workers of a multi-worker run do, each batch "
                          "joining one batch of each worker's pipeline: one process reproduces their run (refused "
                          "for a training set in memory and under multi-worker)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--strategy", "strategy_name",
                     type=click.Choice(["auto", "one-device", "mirrored", "multi-worker"]), default="auto",
                     show_default=True, help="tf.distribute strategy (multi-worker reads TF_CONFIG)."),
        click.option("--replicas", type=click.IntRange(1), default=None,
                     help="Mirrored replicas; on a CPU-only machine, the CPU is split into this many logical devices."),
        click.option("--checkpoint-every", type=SaveIntervalType(), default="30", show_default=True,
                     help="Least interval between saves of the resumable training state, mid-epoch too: seconds "
                          "(30), a time (30s, 10min, 2h) or training steps (500steps). It is also saved after the "
                          "first epoch, and after the current batch on Ctrl-C or SIGTERM; a rerun resumes there."),
        click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
                     help="Output folder (model.keras, metrics.json, test_predictions.csv, training_log.csv, and with the plot "
                          "extra parity.png or roc.png and training_curve.png)."),
        click.option("--restart", is_flag=True,
                     help="Discard the run already in the output folder and start afresh (else an interrupted "
                          "run resumes, and one with other settings is refused)."),
        click.option("--quiet", is_flag=True, help="No per-epoch lines or progress bars."),
    ]
    return _with_options(command, options)


def _head_options(command):
    """Hyperparameters of an AtomSets head (Table S2 of the paper)."""
    options = [
        click.option("--units", type=click.IntRange(1), default=64, show_default=True, help="Width of hidden layers."),
        click.option("--layers-before", type=click.IntRange(0), default=2, show_default=True),
        click.option("--layers-after", type=click.IntRange(0), default=2, show_default=True),
        click.option("--readout", type=click.Choice(["mean", "set2set", "mean+set2set"]), default="mean",
                     show_default=True),
        click.option("--activation", type=click.Choice(["relu", "softplus"]), default="relu", show_default=True),
        click.option("--output-kind", type=click.Choice(["auto", *OUTPUT_KINDS]), default="auto", show_default=True,
                     help="A regression target's output: auto = what a Matbench task's target calls for "
                          "(non-negative for gaps, frequencies, yield strength, exfoliation energy), linear for "
                          "other data; zero-inflated = P(target > 0) times a positive magnitude."),
        click.option("--ensemble", type=click.IntRange(1), default=1, show_default=True,
                     help="Train K members with different seeds as one model; predictions get a std."),
        click.option("--bootstrap", is_flag=True, help="Each ensemble member trains on its own bootstrap sample."),
    ]
    return _with_options(command, options)


def _model_config(opts: dict):
    """The :class:`~atomsets_tf.workflows.fit.ModelConfig` of the ``_head_options``."""
    from atomsets_tf.workflows.fit import ModelConfig

    readout = opts["readout"]
    return ModelConfig(n_layers_before_readout=opts["layers_before"], n_layers_after_readout=opts["layers_after"],
                       units=opts["units"], readout=readout.split("+") if "+" in readout else readout,
                       activation=opts["activation"],
                       output=None if opts["output_kind"] == "auto" else opts["output_kind"],
                       ensemble=opts["ensemble"], bootstrap=opts["bootstrap"])


def _with_target(data: str, target: str | None):
    """DATA as given, or read with its ``--target`` column (a :class:`~atomsets_tf.data.io.Table`)."""
    if target is None:
        return data
    from atomsets_tf.data.io import load

    return load(data, target=target)


def _run_settings(opts: dict):
    """``(strategy, TrainingConfig, split kwargs)`` from the shared options; the strategy first (it may split the CPU)."""
    from atomsets_tf.training.strategy import get_strategy
    from atomsets_tf.training.trainer import TrainingConfig

    strategy = get_strategy(opts["strategy_name"], opts["replicas"])
    training = TrainingConfig(
        epochs=opts["epochs"], patience=opts["patience"], batch_size=opts["batch_size"], learning_rate=opts["lr"],
        seed=opts["seed"], checkpoint_every=opts["checkpoint_every"], loss=opts["loss"],
        schedule=opts["schedule"], schedule_period=opts["schedule_period"],
        mixed_precision=opts["mixed_precision"], optimizer=opts["optimizer"], weight_decay=opts["weight_decay"],
        steps_per_epoch=opts["steps_per_epoch"], stream_above=opts["stream_above"],
        input_pipelines=opts["input_pipelines"],
    )
    common = {key: opts[key] for key in ("task_type", "protocol", "fold", "val_fraction", "split_file", "out_dir",
                                         "restart")}
    return strategy, training, {**common, "progress": not opts["quiet"], "strategy": strategy}


#: ``--element-features`` of ``fit`` and ``benchmark``.
_ELEMENT_FEATURES_OPTION = click.option(
    "--element-features", "element_features", multiple=True, metavar="NAME",
    help="Repeatable. atomsets-v0: take V0 from these sources, concatenated per element "
         "(unscaled): megnet (its 16-wide JSON table), matscholar (CGAT's), or a MEGNet preset / checkpoint "
         "(its embedding layer). Default: megnet-mp-2019.4.1-formation_energy, the AtomSets paper's V0 "
         "(embedded: offline).")


@cli.command()
@click.argument("data")
@click.option("--model", "model_name", type=ModelChoice(FIT_MODELS), default="atomsets", show_default=True,
              help="A model of the AtomSets paper's Table 1.")
@click.option("--features-from", default=None,
              help="MEGNet checkpoint or preset that structural models tap (default: the paper's parent model); "
                   "with atomsets-v0, take V0 from its embedding.")
@_ELEMENT_FEATURES_OPTION
@_head_options
@_training_options
def fit(data, model_name, features_from, element_features, **opts) -> None:
    """Train an AtomSets model on DATA and evaluate it on its test split.

    DATA is a matbench-layout .json/.json.gz, a CSV (id, composition, target),
    a CIF (every block) or POSCAR file, a folder of CIF/POSCAR files, an
    extxyz/xyz/traj file (the ase extra), a prepared dataset (`atomsets-tf
    prepare`), or a Matbench task name such as matbench_steels (embedded in the
    package; other tasks are read from $ATOMSETS_TF_DATA, see the README).
    Files without targets (CIF, POSCAR, folders) cannot be trained on: give
    them to `predict`. A run killed midway and started again with the same -o
    resumes where it was.
    """
    from atomsets_tf.workflows.fit import fit as run_fit

    strategy, training, common = _run_settings(opts)
    model_config = _model_config(opts)
    result = run_fit(_with_target(data, opts["target"]), model=model_name, training=training, model_config=model_config,
                     features_from=features_from, element_features=list(element_features) or None, **common)
    _report(result.metrics, opts["out_dir"], strategy)


@cli.command()
@click.argument("model")
@click.argument("data")
@click.option("--mode", type=click.Choice(["scratch", "head", "full"]), default="full", show_default=True,
              help="scratch: fresh weights; head: only the regression head trains; full: every weight trains.")
@click.option("--backbone-lr-factor", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="In full mode, the pretrained part's learning rate relative to the head's.")
@click.option("--ensemble", type=click.IntRange(1), default=1, show_default=True,
              help="Retrain K copies of an AtomSets or MEGNet parent as one ensemble (give them --bootstrap "
                   "samples; not yet of a CGAT).")
@click.option("--bootstrap", is_flag=True, help="Each ensemble member retrains on its own bootstrap sample.")
@_training_options
def retrain(model, data, mode, backbone_lr_factor, ensemble, bootstrap, **opts) -> None:
    """Retrain a pretrained MODEL on DATA in a transfer mode (scratch, head, full).

    MODEL is a megnet .hdf5, a CGAT .ckpt, a .keras MEGNet, CGAT or AtomSets model, or a preset.
    Writes OUTPUT/model.keras and OUTPUT/metrics.json; a killed run resumes.
    """
    from atomsets_tf.workflows.retrain import retrain as run_retrain

    strategy, training, common = _run_settings(opts)
    result = run_retrain(model, _with_target(data, opts["target"]), mode, training=training, backbone_lr_factor=backbone_lr_factor,
                         ensemble=ensemble, bootstrap=bootstrap, **common)
    _report(result.metrics, opts["out_dir"], strategy)


def _report(metrics: dict, out_dir: str, strategy) -> None:
    """The end-of-run table and what was written (on the chief only, under multi-worker training)."""
    from atomsets_tf.training.multi_worker import is_chief

    if not is_chief(strategy):
        return
    from atomsets_tf.evaluation.reference import paper_comparison

    _print_summary(metrics)
    if metrics.get("read_back"):
        click.echo(f"Read back the finished run in {out_dir}: the same settings, so nothing was retrained "
                   "(--restart retrains it)")
        return
    click.echo(f"Wrote {os.path.join(out_dir, 'model.keras')} and {os.path.join(out_dir, 'metrics.json')}")
    comparison = paper_comparison(metrics)
    if comparison is not None:
        click.echo(comparison)
    for kind, name in sorted((metrics.get("plots") or {}).items()):
        click.echo(f"{kind.replace('_', ' ')} plot: {os.path.join(out_dir, name)}")


def _print_summary(metrics: dict) -> None:
    rows = [(k, metrics[k]) for k in ("model", "mode", "data", "target", "task_type", "n_train", "n_val", "n_test", "epochs_run",
                                      "best_epoch", "val_mae", "test_mae", "val_roc_auc", "test_roc_auc",
                                      "strategy", "replicas", "wall_time_s") if k in metrics]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")


@cli.command()
@click.argument("model")
@click.argument("data")
@click.option("-o", "--output", "out_csv", required=True, type=click.Path(dir_okay=False),
              help="Output CSV: id,prediction (+ std for an ensemble, + probability for a classifier).")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Structures per batch (default: MEGNet plans its batches by cost; 32 for CGAT, 256 for AtomSets).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def predict(model, data, out_csv, batch_size, quiet) -> None:
    """Predict DATA with MODEL and write OUT.csv (id,input,prediction[,std][,probability][,probability_nonzero]).

    `input` is the formula or composition as given, or a structure's reduced formula. An ensemble adds its std;
    a classifier writes the class (0/1) as prediction and its probability; a two-part band-gap model adds
    probability_nonzero, P(gap > 0) (its prediction is exactly 0 below 0.5).

    MODEL is a .keras file (AtomSets, MEGNet or CGAT), a megnet .hdf5, a CGAT
    .ckpt, or a preset name (see `atomsets-tf models`). DATA is a data file, a
    matbench task name, a CIF (every block) or POSCAR file, an extxyz/xyz/traj
    file, a folder of CIF/POSCAR files, a prepared dataset, or formulas as one
    argument, comma-separated ("Fe2O3,MgO").
    """
    from atomsets_tf.data.io import load
    from atomsets_tf.models.loading import load_model, predict_frame
    from atomsets_tf.utils.io import check_writable
    from atomsets_tf.workflows.outputs import write_frame_csv

    check_writable(out_csv)  # before the work, not after it
    net = load_model(model)
    table = load(data)
    write_frame_csv(out_csv, predict_frame(net, table, batch_size, progress=not quiet))
    click.echo(f"Wrote {len(table)} predictions to {out_csv}")


@cli.command()
@click.argument("model")
@click.argument("data")
@click.option("--layer", "layers", multiple=True, required=True, help="Tap name (repeatable), e.g. V1, f.")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output .npz file, or a folder (a path ending in / or an existing folder) for sharded output.")
@click.option("--shard-size", type=click.IntRange(1), default=None,
              help="Entries per shard of a folder output  [default: 4096].")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Structures per batch (default: MEGNet plans its batches by cost; 32 for CGAT, 256 for AtomSets).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def tap(model, data, layers, output, shard_size, batch_size, quiet) -> None:
    """Write intermediate features of MODEL for the structures in DATA to OUTPUT.

    An .npz file holds `ids` (n,). An atom-level layer L is stored as float32
    (total_atoms, d) with `L.offsets` int64 (n+1,): structure i owns rows
    offsets[i]:offsets[i+1], in site order. A structure-level layer is (n, d).

    A folder (-o DIR/) is written as it goes, so memory stays flat on large
    inputs: shards taps-00000.npz, taps-00001.npz, ... of --shard-size
    structures, each in the layout above with its own `ids` and offsets, then
    index.json (tap names, widths, levels, shards with their first entry,
    sha256 and size, the model and data). Rerun an interrupted command to
    resume it (on the same structures: changed ones are refused).
    Read it with atomsets_tf.data.taps.load_tap_folder or read_tap_shards.
    """
    from atomsets_tf.data.io import load
    from atomsets_tf.data.taps import INDEX_FILE
    from atomsets_tf.errors import OutputPathError
    from atomsets_tf.models.loading import load_model, tap_table
    from atomsets_tf.utils.io import check_writable
    from atomsets_tf.workflows.outputs import DEFAULT_SHARD_SIZE, write_tap_folder, write_taps_npz

    to_folder = output.endswith(("/", os.sep)) or os.path.isdir(output)
    if to_folder:  # before the work, not after it
        check_writable(os.path.join(output, INDEX_FILE))
    else:
        check_writable(output, (".npz",))
        if shard_size is not None:
            raise OutputPathError(f"--shard-size needs a folder output (-o DIR/), got the file {output}")
    net = load_model(model)
    table = load(data)
    if to_folder:
        index = write_tap_folder(net, table, list(layers), output, batch_size, shard_size or DEFAULT_SHARD_SIZE,
                                 model_name=str(model), data=str(data), progress=not quiet)
        click.echo(f"Wrote {', '.join(index['taps'])} for {len(table)} structures to {output} "
                   f"({len(index['shards'])} shards and {INDEX_FILE})")
        return
    out = tap_table(net, table, list(layers), batch_size, progress=not quiet)
    write_taps_npz(output, table.ids, out)
    click.echo(f"Wrote {', '.join(out)} for {len(table)} structures to {output}")


@cli.command()
@click.argument("data")
@click.option("--for", "model", required=True,
              help="A MEGNet or CGAT checkpoint or preset (its graphs), or a structural AtomSets model such as "
                   "atomsets-v1 or mlp-f (its taps; see --features-from).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The dataset folder (TFRecord shards and manifest.json).")
@click.option("--features-from", default=None,
              help="The MEGNet that a structural AtomSets model taps (default: the paper's parent model).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Processes that build graphs.")
@click.option("--shard-size", type=click.IntRange(1), default=1024, show_default=True, help="Entries per shard.")
@click.option("--strict", is_flag=True, help="Stop at the first entry that cannot be prepared (default: list it "
                                             "in the manifest and go on).")
@click.option("--restart", is_flag=True, help="Discard a dataset prepared otherwise in the folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prepare(data, model, out_dir, features_from, workers, shard_size, strict, restart, quiet) -> None:
    """Prepare DATA once for a model: graphs or taps in TFRecord shards, read by every command that takes DATA.

    An interrupted run started again continues: finished shards are kept (on
    the same data: other ids, targets or structures need --restart). Entries
    that cannot be prepared are listed in manifest.json; when none can be,
    it is an error.
    """
    from atomsets_tf.workflows.prepare import prepare as prepare_data

    manifest = prepare_data(data, model, out_dir, workers=workers, features_from=features_from,
                            shard_size=shard_size, strict=strict, restart=restart, progress=not quiet)
    failed = len(manifest["failures"])
    click.echo(f"Prepared {len(manifest['ids'])} entries in {len(manifest['shards'])} shards in {out_dir}"
               + (f"; {failed} could not be prepared (listed in manifest.json)" if failed else ""))


@cli.command()
@_without_tensorflow
@click.option("--download", "to_fetch", metavar="NAME", multiple=True,
              help="Fetch preset NAME and the presets it needs into the cache (sha256-checked); repeatable.")
@click.option("--quiet", is_flag=True, help="No download progress bars.")
def models(to_fetch, quiet) -> None:
    """List the preset models and whether each, and every preset it needs, is on disk ("local"); or fetch some.

    A preset marked "download" is fetched on first use when online, or by --download NAME; "needs X" names
    a preset it runs on (a head's parent MEGNet) that is not on disk yet.
    """
    from atomsets_tf.presets import download, list_presets

    for name in to_fetch:
        paths = download(name, progress=not quiet)
        click.echo(f"{name}: on disk, " + ", ".join(str(p) for p in paths.values()))
    if to_fetch:
        return
    rows = list_presets()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        others = [n for n in r["missing"] if n != r["name"]]
        status = "local" if r["available"] else " + ".join(
            (["download"] if r["name"] in r["missing"] else []) + ([f"needs {', '.join(others)}"] if others else []))
        click.echo(f"{r['name']:<{width}}  {r['kind']:<8}  {status:<8}  {r['description']}")


@cli.command()
@click.argument("model")
def inspect(model) -> None:
    """Describe MODEL: its blocks and the names it can be tapped at."""
    from atomsets_tf.models.loading import describe, load_model

    click.echo(describe(load_model(model)))


@cli.command()
@click.argument("ckpt", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output .keras file.")
def convert(ckpt, out_path) -> None:
    """Convert a CGAT PyTorch Lightning checkpoint (CKPT) into a Keras model file (needs torch)."""
    from atomsets_tf.models.cgat.convert import convert_checkpoint

    convert_checkpoint(ckpt, out_path)
    click.echo(f"Wrote {out_path}")


def _folds(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(f) for f in value.split(",") if f.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated fold numbers such as 0,1,2, got {value!r}") from None


def _benchmark_training(n_entries: int, opts: dict):
    from atomsets_tf.evaluation.protocol import default_training

    return default_training(n_entries, opts["budget_epochs"], batch_size=opts["batch_size"],
                            patience=opts["patience"], learning_rate=opts["lr"], seed=opts["seed"])


def _benchmark_options(command=None, *, protocol: bool = True):
    """Options of the commands that train on several splits: protocol (unless the command makes its own split),
    epochs, optimisation, output."""
    if command is None:
        return lambda cmd: _benchmark_options(cmd, protocol=protocol)
    options = [
        *([click.option("--protocol", type=click.Choice(["matbench", "paper"]), default="matbench", show_default=True,
                        help="matbench: the 5 official folds; paper: 5 random 80/10/10 splits.")] if protocol else []),
        click.option("--epochs", "budget_epochs", type=click.IntRange(1), default=None,
                     help="Cap on epochs per run (default: the paper's 1000 with patience 200)."),
        click.option("--budget-epochs", "old_budget_epochs", type=click.IntRange(1), default=None, hidden=True,
                     help="The old name of --epochs."),
        click.option("--batch-size", type=click.IntRange(1), default=None,
                     help="Default: 16 below 1000 entries, 128 below 50k, 512 above."),
        click.option("--patience", type=click.IntRange(1), default=None, help="Default: 200, as in the paper."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Default: 1e-3."),
        click.option("--seed", type=int, default=None, help="Fold k trains with seed + k (default 0)."),
        click.option("--features-from", default=None,
                     help="The pretrained model: the MEGNet that structural models tap and megnet-head/full "
                          "retrain (default: the paper's parent), or the CGAT file that cgat-head/full retrain."),
        click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
                     help="Output folder."),
        click.option("--restart", is_flag=True,
                     help="Retrain every run, discarding what the output folder holds (else finished runs with "
                          "the same settings are read back, and runs with other settings refused)."),
        click.option("--quiet", is_flag=True, help="No progress bar and no per-item result lines."),
    ]
    return _with_options(_taking_old_names(command), options)


def _taking_old_names(command):
    """``command`` reading ``--budget-epochs`` (the old name of ``--epochs``, kept for recorded commands) as
    ``--epochs``."""

    @functools.wraps(command)
    def run(*args, **opts):
        old = opts.pop("old_budget_epochs", None)
        if old is not None:
            if opts["budget_epochs"] not in (None, old):
                raise click.UsageError("--budget-epochs is the old name of --epochs: give one of them")
            opts["budget_epochs"] = old
        return command(*args, **opts)

    return run


@cli.command()
@click.argument("task")
@click.option("--model", "model_name", type=ModelChoice(BENCHMARK_MODELS), required=True,
              help="A model of Table 1; megnet or cgat from scratch; megnet-head/full or cgat-head/full "
                   "(a pretrained model retrained); dummy (mean / majority class).")
@click.option("--folds", default=None, help="Comma-separated folds (default: all five).")
@click.option("--task", "official_task", default=None,
              help="For a file holding some entries of this Matbench task: its official folds restricted to "
                   "the file's ids (e.g. matbench_perovskites).")
@_ELEMENT_FEATURES_OPTION
@_head_options
@_benchmark_options
def benchmark(task, model_name, folds, official_task, element_features, **opts) -> None:
    """Benchmark a model on TASK over all folds of a protocol; writes OUTPUT/summary.json.

    TASK is a matbench task name with local data (or a file). Each fold trains
    in OUTPUT/fold_<k>; a rerun skips finished folds and resumes an interrupted one.
    """
    from atomsets_tf.evaluation.protocol import run_benchmark
    from atomsets_tf.evaluation.runners import load_task

    table = load_task(task, model_name)
    summary = run_benchmark(table, model_name, opts["out_dir"], opts["protocol"], _folds(folds),
                            opts["budget_epochs"], _benchmark_training(len(table), opts), _model_config(opts),
                            opts["features_from"], command=_command(),
                            report=_result_lines(opts["quiet"]), restart=opts["restart"],
                            official_task=official_task, element_features=list(element_features) or None)
    budget = f", at most {opts['budget_epochs']} epochs" if opts["budget_epochs"] else ""
    click.echo(f"{summary['task']} {model_name} ({summary['protocol']}, {summary['n_folds']} folds{budget}): "
               f"{summary['metric']} {summary['mean']:.4g} ± {summary['std']:.2g}")
    plots = sorted((summary.get("plots") or {}).values())
    click.echo(f"Wrote {os.path.join(opts['out_dir'], 'summary.json')}"
               + (f" and {', '.join(os.path.join(opts['out_dir'], p) for p in plots)}" if plots else ""))


@cli.command()
@click.argument("task")
@click.option("--model", "model_name", type=ModelChoice(FIT_MODELS), required=True,
              help="An AtomSets or MLP model of Table 1.")
@click.option("--fold", type=click.IntRange(0, 4), default=0, show_default=True,
              help="matbench protocol: search on this official fold's training part only.")
@click.option("--cv-folds", type=click.IntRange(2), default=5, show_default=True)
@click.option("--max-configs", type=click.IntRange(1), default=None,
              help="Run a seeded random subset of the grid (default: all of Table S2).")
@_benchmark_options
def grid(task, model_name, fold, cv_folds, max_configs, **opts) -> None:
    """Search the Table S2 hyperparameter grid of a model on TASK by cross-validation; writes OUTPUT/grid.json.

    Prints every configuration's mean validation metric and the benchmark
    command that evaluates the best one on the official folds.
    """
    from atomsets_tf.evaluation.grid import grid_search
    from atomsets_tf.evaluation.runners import load_task

    table = load_task(task, model_name)
    record = grid_search(table, model_name, opts["out_dir"], opts["protocol"], fold, cv_folds, max_configs,
                         opts["budget_epochs"], _benchmark_training(len(table), opts), opts["features_from"],
                         seed=opts["seed"] or 0, command=_command(), report=_result_lines(opts["quiet"]),
                         restart=opts["restart"])
    best = record["best"]
    click.echo(f"best of {record['n_configs']}/{record['n_grid']} configurations: val {record['metric']} "
               f"{best['mean']:.4g} ± {best['std']:.2g}")
    click.echo(f"Evaluate it on the official folds with:\n  {record['benchmark_command']}")
    click.echo(f"Wrote {os.path.join(opts['out_dir'], 'grid.json')}")


def _result_lines(quiet: bool):
    """Where a long command's per-item result lines go: above its progress bar on stdout, or nowhere (--quiet)."""
    from atomsets_tf.utils.progress import write_line

    return None if quiet else write_line


def _command() -> str:
    """This process's command line, as a user would type it."""
    import shlex

    obj = click.get_current_context().obj or {}
    return shlex.join(["atomsets-tf", *obj.get("argv", sys.argv[1:])])


def _experiment_options(opts: dict) -> dict:
    """The keyword arguments ``learning-curve`` and ``extrapolation`` share (training settings are per data size)."""
    return {"training": lambda n: _benchmark_training(n, opts), "budget_epochs": opts["budget_epochs"],
            "model_config": _model_config(opts), "features_from": opts["features_from"], "seed": opts["seed"] or 0,
            "command": _command(), "report": _result_lines(opts["quiet"]), "restart": opts["restart"]}


@cli.command("learning-curve")
@click.argument("task")
@click.option("--model", "model_names", type=ModelChoice(BENCHMARK_MODELS), multiple=True, required=True,
              help="Repeatable. The first is the reference of the improvement columns (put the baseline first).")
@click.option("--sizes", default=None,
              help="Comma-separated data sizes N, training + validation (default: 100, 200, 400, ... and all "
                   "entries outside the test set).")
@click.option("--goal", type=click.FloatRange(min=0, min_open=True), default=None,
              help="An error to reach (MAE in target units; 1 - ROC-AUC for classification): report the N needed.")
@click.option("--fold", type=click.IntRange(0), default=0, show_default=True,
              help="Official fold (matbench) or random split (paper) whose test set is kept fixed.")
@_head_options
@_benchmark_options
def learning_curve_command(task, model_names, sizes, goal, fold, **opts) -> None:
    """Learning curves of models on TASK: test error against data size, with log-log power-law fits.

    Every size N trains on a random subset of the entries outside one fixed test
    set (nested: the 200 hold the 100; 10 % is validation), in OUTPUT/<model>/n_<N>;
    a rerun skips finished runs. Classification tasks are drawn as 1 - ROC-AUC.
    Writes OUTPUT/learning_curve.json and OUTPUT/learning_curve.png.
    """
    from atomsets_tf.evaluation.learning_curve import format_learning_curve, learning_curve, parse_sizes

    summary = learning_curve(task, list(model_names), opts["out_dir"], None if sizes is None else parse_sizes(sizes),
                             opts["protocol"], fold, target=goal, **_experiment_options(opts))
    click.echo(format_learning_curve(summary))
    click.echo(f"Wrote {os.path.join(opts['out_dir'], 'learning_curve.json')} and learning_curve.png")


@cli.command("extrapolation")
@click.argument("task")
@click.option("--model", "model_names", type=ModelChoice(BENCHMARK_MODELS), multiple=True, required=True,
              help="Repeatable, e.g. --model atomsets --model atomsets-v0 --model megnet.")
@click.option("--quantile", type=click.FloatRange(0.5, 1, max_open=True), default=0.9, show_default=True,
              help="Targets above this quantile are the extrapolation test set.")
@_head_options
@_benchmark_options(protocol=False)
def extrapolation_command(task, model_names, quantile, **opts) -> None:
    """Interpolation against extrapolation error on TASK (a regression task; AtomSets paper, Fig. 4).

    The top targets (above --quantile) are held out as the extrapolation test set,
    with as many entries from below as the interpolation test set; the models train
    on the rest. Each trains in OUTPUT/<model>;
    writes OUTPUT/extrapolation.json and OUTPUT/extrapolation.png.
    """
    from atomsets_tf.evaluation.extrapolation import extrapolation, format_extrapolation

    summary = extrapolation(task, list(model_names), opts["out_dir"], quantile, **_experiment_options(opts))
    click.echo(format_extrapolation(summary))
    click.echo(f"Wrote {os.path.join(opts['out_dir'], 'extrapolation.json')} and extrapolation.png")


def tensorflow_commands() -> set[str]:
    """The commands that run TensorFlow: every command but those marked :func:`_without_tensorflow`. TensorFlow
    is imported first for them, with its C++ start-up notes held back, so that stderr carries only the command's
    own progress and its ``Error:`` line; --help needs none."""
    return {name for name, command in cli.commands.items() if not getattr(command.callback, "without_tensorflow", False)}


def _needs_tensorflow(args: list[str]) -> bool:
    return bool(args) and args[0] in tensorflow_commands() and not {"-h", "--help", "--version"} & set(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning bad input into one ``Error:`` line and exit code 2."""
    from atomsets_tf.errors import AtomSetsError, TrainingInterrupted

    try:
        args = sys.argv[1:] if argv is None else list(argv)
        if _needs_tensorflow(args):
            import_tensorflow_quietly()
        cli.main(args=args, prog_name="atomsets-tf", standalone_mode=False, obj={"argv": args})
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, TrainingInterrupted):  # click turns a KeyboardInterrupt into Abort
            click.echo(f"Error: {_one_line(str(exc.__cause__))}", err=True)
            return 128 + exc.__cause__.signum
        click.echo("Error: aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
        return EXIT_BAD_INPUT
    except (AtomSetsError, OSError) as exc:
        click.echo(f"Error: {_one_line(str(exc) or type(exc).__name__)}", err=True)
        return EXIT_BAD_INPUT
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())

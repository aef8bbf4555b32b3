"""The ``atomsets-tf`` command line: a thin shell over the Python API.

Bad input ends with one line ``Error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from atomsets_tf._version import __version__  # noqa: E402

EXIT_BAD_INPUT = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atomsets-tf")
def cli() -> None:
    """AtomSets transfer learning with graph networks (Keras 3 / TensorFlow)."""


@cli.command()
@click.argument("data")
@click.option("--model", "model_name", type=click.Choice(["atomsets", "atomsets-v0"]), default="atomsets",
              show_default=True, help="AtomSets (trainable element embedding) or AtomSets-V0 (MEGNet's V0).")
@click.option("--task-type", type=click.Choice(["regression", "classification"]), default=None,
              help="Inferred from the targets when omitted.")
@click.option("--protocol", type=click.Choice(["paper", "matbench"]), default="paper", show_default=True,
              help="paper: random 80/10/10 split; matbench: an official fold.")
@click.option("--fold", type=click.IntRange(0), default=0, show_default=True, help="Which split or fold.")
@click.option("--epochs", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--patience", type=click.IntRange(1), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--units", type=click.IntRange(1), default=64, show_default=True, help="Width of hidden layers.")
@click.option("--layers-before", type=click.IntRange(0), default=2, show_default=True)
@click.option("--layers-after", type=click.IntRange(0), default=2, show_default=True)
@click.option("--readout", type=click.Choice(["mean", "set2set", "mean+set2set"]), default="mean",
              show_default=True)
@click.option("--activation", type=click.Choice(["relu", "softplus"]), default="relu", show_default=True)
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (model.keras, metrics.json, test_predictions.csv).")
@click.option("--strategy", "strategy_name", type=click.Choice(["auto", "one-device", "mirrored", "multi-worker"]),
              default="auto", show_default=True, help="tf.distribute strategy.")
@click.option("--replicas", type=click.IntRange(1), default=None,
              help="Mirrored replicas; on a CPU-only machine, the CPU is split into this many logical devices.")
@click.option("--checkpoint-every", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Seconds between saves of the resumable training state.")
@click.option("--quiet", is_flag=True, help="No per-epoch progress.")
def fit(data, model_name, task_type, protocol, fold, epochs, patience, batch_size, lr, seed, units,
        layers_before, layers_after, readout, activation, out_dir, strategy_name, replicas, checkpoint_every,
        quiet) -> None:
    """Train a compositional AtomSets model on DATA and evaluate it.

    DATA is a matbench-layout .json/.json.gz, a CSV (id, composition, target),
    or a matbench task name such as matbench_steels (embedded in the package).
    A run killed midway and started again with the same -o resumes where it was.
    """
    from atomsets_tf.training.fit import ModelConfig, TrainingConfig
    from atomsets_tf.training.fit import fit as run_fit
    from atomsets_tf.training.strategy import get_strategy

    strategy = get_strategy(strategy_name, replicas)  # first: it may split the CPU into logical devices
    result = run_fit(
        data,
        model=model_name,
        task_type=task_type,
        protocol=protocol,
        fold=fold,
        training=TrainingConfig(epochs=epochs, patience=patience, batch_size=batch_size, learning_rate=lr, seed=seed,
                                checkpoint_interval_s=checkpoint_every),
        model_config=ModelConfig(
            n_layers_before_readout=layers_before, n_layers_after_readout=layers_after, units=units,
            readout=readout.split("+") if "+" in readout else readout, activation=activation,
        ),
        out_dir=out_dir,
        progress=not quiet,
        strategy=strategy,
    )
    _print_summary(result.metrics)
    click.echo(f"Wrote {os.path.join(out_dir, 'model.keras')} and {os.path.join(out_dir, 'metrics.json')}")


def _print_summary(metrics: dict) -> None:
    rows = [(k, metrics[k]) for k in ("model", "data", "task_type", "n_train", "n_val", "n_test", "epochs_run",
                                      "best_epoch", "val_mae", "test_mae", "val_roc_auc", "test_roc_auc",
                                      "strategy", "replicas", "wall_time_s") if k in metrics]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")


@cli.command()
@click.argument("model")
@click.argument("data")
@click.option("-o", "--output", "out_csv", required=True, type=click.Path(dir_okay=False),
              help="Output CSV with header id,prediction.")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
def predict(model, data, out_csv, batch_size) -> None:
    """Predict DATA with MODEL (an AtomSets .keras file) and write OUT.csv."""
    from atomsets_tf.data.io import load
    from atomsets_tf.models.predict import load_keras_model, predict_atomsets
    from atomsets_tf.training.fit import write_predictions_csv

    net = load_keras_model(model)
    table = load(data)
    predictions = predict_atomsets(net, table, batch_size)
    write_predictions_csv(out_csv, table.ids, predictions)
    click.echo(f"Wrote {len(table)} predictions to {out_csv}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning bad input into one ``Error:`` line and exit code 2."""
    from atomsets_tf.errors import AtomSetsError

    try:
        cli.main(args=argv, prog_name="atomsets-tf", standalone_mode=False)
    except click.exceptions.Abort:
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

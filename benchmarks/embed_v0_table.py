"""Write the package's embedded copy of a MEGNet preset's V0 table (its ``atom_embedding`` rows).

    python benchmarks/embed_v0_table.py megnet-mp-2019.4.1-formation_energy

writes ``atomsets_tf/resources/megnet_v0/<preset>.json.gz``: the rows as float32 values (written as the
shortest decimal that reads back to the same float32) and the sha256 of the checkpoint they were read from.
AtomSets-V0 with ``--element-features <preset>`` then runs offline (the README's first command).
"""

from __future__ import annotations

import argparse
import gzip
import json

import numpy as np

from atomsets_tf import presets
from atomsets_tf.data.elements import EMBEDDED_V0_DIR
from atomsets_tf.models.megnet.model import load_megnet
from atomsets_tf.utils.io import atomic_path


def embed(preset: str) -> str:
    rows = load_megnet(preset).embedding_table()
    checkpoint = presets.resolve(preset)["hdf5"]
    record = {"preset": preset, "checkpoint_sha256": presets.sha256_file(checkpoint),
              "source": "megnet (Materials Virtual Lab, BSD-3): the atom_embedding layer of the checkpoint",
              "rows": [[float(np.float32(x)) for x in row] for row in rows]}
    EMBEDDED_V0_DIR.mkdir(parents=True, exist_ok=True)
    path = EMBEDDED_V0_DIR / f"{preset}.json.gz"
    with atomic_path(path) as tmp, gzip.GzipFile(tmp, "wb", mtime=0) as fh:  # mtime 0: the same bytes every time
        fh.write(json.dumps(record, separators=(",", ":")).encode())
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+")
    for preset in parser.parse_args().presets:
        print(embed(preset))


if __name__ == "__main__":
    main()

"""Speed of building CGAT graphs against pymatgen's compiled neighbour search alone.

For N matbench jdft2d structures and N perovskites (``shared/data``), structures per second of

* ``search``: ``Structure.get_neighbor_list(radius)`` alone (pymatgen's compiled
  ``find_points_in_spheres``), the floor of any neighbour-list builder;
* ``graph``: :func:`atomsets_tf.models.cgat.data.structure_to_graph` (the search, the canonical neighbour
  order, element embedding, composition), no memo;
* ``order``: :func:`atomsets_tf.models.cgat.neighbours.canonical_neighbours` alone, on the search's arrays
  (where the rest of the graph's time goes);
* ``original``: the neighbour lists as CGAT's own ``prepare_data.py`` builds them (and as this package
  did before issue 11): ``get_all_neighbors`` (one Python object per neighbour) and a stable sort by
  distance per site, on the first ``--original-n`` structures (it is slow), alternated with ``graph``
  on the same structures for the speed-up.

The machine may be shared: the cases alternate within each repetition (order reversed every other
repetition), the ratio ``graph / search`` is taken per repetition (paired) and its median reported,
for wall-clock and for process CPU time. The target of issue 11 is a ratio of at least 0.5.

    python benchmarks/cgat_graph_build.py                 # 200 per set, 5 repetitions
    python benchmarks/cgat_graph_build.py --n 100 --repeats 3

Writes ``benchmarks/results/cgat_graph_build.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.checkout, run or imported
from benchmarks.checkout import use_checkout_shared  # noqa: E402

use_checkout_shared()  # the development folder: $ATOMSETS_TF_SHARED, else the checkout's ../shared

from atomsets_tf.models.cgat.data import structure_to_graph  # noqa: E402
from atomsets_tf.models.cgat.elements import load_matscholar_embedding  # noqa: E402
from atomsets_tf.models.cgat.neighbours import canonical_neighbours  # noqa: E402
from atomsets_tf.utils.io import shared_dir, write_json_atomic  # noqa: E402

SETS = {
    "jdft2d": "data/matbench/matbench_jdft2d.json.gz",
    "perovskites": "data/structures/matbench_perovskites_val_subset.json.gz",
}
CASES = ("search", "graph", "order")


def load_set(path: Path, n: int):
    """First ``n`` entries of a matbench-layout file: (ids, pymatgen structures)."""
    from pymatgen.core import Structure

    raw = json.loads(gzip.open(path).read())
    return raw["index"][:n], [Structure.from_dict(row[0]) for row in raw["data"][:n]]


def case_functions(ids, structures, embedding, radius: float) -> dict:
    raw = [s.get_neighbor_list(radius) for s in structures]

    def search():
        for s in structures:
            s.get_neighbor_list(radius)

    def graph():
        for s, sid in zip(structures, ids, strict=True):
            structure_to_graph(s, embedding, radius, structure_id=sid)

    def order():
        for s, arrays in zip(structures, raw, strict=True):
            canonical_neighbours(*arrays, len(s))

    return {"search": search, "graph": graph, "order": order}


def original_neighbour_lists(structure, radius: float, max_neighbors: int = 24) -> list:
    """CGAT's own method: every site's ``get_all_neighbors``, stable-sorted by distance, the first 24 ranked."""
    lists = []
    for nbrs in structure.get_all_neighbors(radius, include_index=True):
        nearest = sorted(nbrs, key=lambda nb: nb.nn_distance)[:max_neighbors]
        shell, start, ranked = 1, nearest[0].nn_distance, []
        for nb in nearest:
            if nb.nn_distance > start + 1e-8:
                shell, start = shell + 1, nb.nn_distance
            ranked.append((nb.index, shell))
        lists.append(ranked)
    return lists


def original_rates(ids, structures, embedding, radius: float, repeats: int) -> dict:
    """Structures per second of :func:`original_neighbour_lists` and of ``structure_to_graph`` on the same
    structures, alternated (medians over ``repeats``), and their ratio."""
    walls: dict = {"original": [], "graph": []}
    fns = {"original": lambda: [original_neighbour_lists(s, radius) for s in structures],
           "graph": lambda: [structure_to_graph(s, embedding, radius, structure_id=i) for s, i in zip(structures, ids, strict=True)]}
    for r in range(repeats):
        for case in (("original", "graph") if r % 2 == 0 else ("graph", "original")):
            walls[case].append(timed(fns[case])[0])
    rates = {case: len(structures) / statistics.median(w) for case, w in walls.items()}
    return {"n_structures": len(structures), "per_s_wall": rates["original"], "graph_per_s_wall": rates["graph"],
            "speedup": rates["graph"] / rates["original"]}


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_set(name: str, ids, structures, embedding, radius: float, repeats: int) -> dict:
    fns = case_functions(ids, structures, embedding, radius)
    for fn in fns.values():  # warm-up
        fn()
    wall = {c: [] for c in CASES}
    cpu = {c: [] for c in CASES}
    for r in range(repeats):
        for case in (CASES if r % 2 == 0 else CASES[::-1]):
            w, c = timed(fns[case])
            wall[case].append(w)
            cpu[case].append(c)
    n = len(structures)
    row = {
        "set": name, "n_structures": n, "repeats": repeats,
        "mean_sites": float(np.mean([len(s) for s in structures])),
        "mean_pairs_within_radius": float(np.mean([len(s.get_neighbor_list(radius)[0]) for s in structures])),
    }
    for case in CASES:
        row[case] = {"per_s_wall": n / statistics.median(wall[case]), "per_s_cpu": n / statistics.median(cpu[case]),
                     "wall_s": wall[case], "cpu_s": cpu[case]}
    row["ratio_graph_to_search_wall"] = statistics.median(
        [s / g for s, g in zip(wall["search"], wall["graph"], strict=True)])
    row["ratio_graph_to_search_cpu"] = statistics.median(
        [s / g for s, g in zip(cpu["search"], cpu["graph"], strict=True)])
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="structures per set")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--radius", type=float, default=18.0)
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    ap.add_argument("--original-n", type=int, default=40, help="structures timed with the original's method")
    ap.add_argument("--embedding", default=None, help="matscholar embedding JSON (default: the preset)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cgat_graph_build.json"))
    args = ap.parse_args(argv)

    root = shared_dir()
    if root is None:
        sys.exit("shared/ folder not found (set ATOMSETS_TF_SHARED)")
    embedding = load_matscholar_embedding(args.embedding)
    results: dict = {"radius": args.radius, "machine": platform.processor() or platform.machine(),
                     "cpu_count": os.cpu_count(), "numpy": np.__version__,
                     "pymatgen": metadata.version("pymatgen"), "target_ratio": 0.5, "sets": []}
    print(f"{'set':12s} {'n':>5s} {'sites':>6s} {'pairs':>7s} {'search/s':>9s} {'graph/s':>8s} {'order/s':>8s} "
          f"{'ratio':>6s} {'ratio(cpu)':>10s} {'original/s':>10s} {'speed-up':>8s}")
    for name in args.sets:
        ids, structures = load_set(root / SETS[name], args.n)
        row = run_set(name, ids, structures, embedding, args.radius, args.repeats)
        k = args.original_n
        row["original"] = original_rates(ids[:k], structures[:k], embedding, args.radius, 3)
        results["sets"].append(row)
        print(f"{name:12s} {row['n_structures']:5d} {row['mean_sites']:6.1f} {row['mean_pairs_within_radius']:7.0f} "
              f"{row['search']['per_s_wall']:9.0f} {row['graph']['per_s_wall']:8.0f} {row['order']['per_s_wall']:8.0f} "
              f"{row['ratio_graph_to_search_wall']:6.2f} {row['ratio_graph_to_search_cpu']:10.2f} "
              f"{row['original']['per_s_wall']:10.1f} {row['original']['speedup']:8.0f}", flush=True)
    write_json_atomic(args.out, results)
    print("wrote", args.out)


if __name__ == "__main__":
    main()

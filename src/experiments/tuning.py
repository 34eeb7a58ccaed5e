"""Tuning on a grid: each variant at its own configured value (`<variant>_default`) and at the
grid point with the best validation accuracy (`<variant>_tuned`), with the grid's table."""

from __future__ import annotations

import pandas as pd
from omegaconf import OmegaConf

from experiments.config import grid_runs
from experiments.metrics import per_run
from experiments.tables import pipe_table


def resolve_grid(runs: pd.DataFrame, study: dict) -> tuple[pd.DataFrame, dict, str]:
    """For a grid experiment: each variant at its own configured value (<variant>_default) and at
    the grid value with the best mean validation accuracy (<variant>_tuned), plus the grid table."""
    spec = study["experiment"]
    labels = grid_runs(spec["variants"], spec["grid"])
    finals = per_run(runs) if len(runs) else pd.DataFrame(columns=["variant", "val_acc", "test_acc"])
    val = finals.groupby("variant")["val_acc"].mean()
    test = finals.groupby("variant")["test_acc"].mean()
    views, keys, at_edge, view_runs = [], list(spec["grid"]), [], {}
    header = ["variant", *(f"{k.rsplit('.', 1)[-1]}={v}" for k in keys for v in spec["grid"][k]), "tuned",
              "its lead over the runner-up (val)", "default"]
    rows = []
    for base, partial in spec["variants"].items():
        mine = [label for label, (b, _) in labels.items() if b == base]
        scored = [label for label in mine if label in val.index and pd.notna(val[label])]
        # the variant's own value of each grid key, as the runner resolved it without the grid
        own = study.get("grid_defaults", {}).get(base) or {key: OmegaConf.select(OmegaConf.create(partial), key)
                                                          for key in keys}
        chosen = {"tuned": max(scored, key=lambda label: val[label]) if scored else None,
                  "default": next((label for label in mine if all(
                      own.get(key) == value for key, value in labels[label][1].items())), None)}
        point = {kind: ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in labels[label][1].values())
                 if label else "–" for kind, label in chosen.items()}
        ranked = sorted((val[label] for label in scored), reverse=True)
        lead = f"{ranked[0] - ranked[1]:.4f}" if len(ranked) > 1 else "–"
        rows.append([base, *(f"{val[label]:.3f} ({test[label]:.3f})" if label in val.index and pd.notna(val[label])
                             else "–" for label in mine), point["tuned"], lead, point["default"]])
        if chosen["tuned"] in (mine[0], mine[-1]) and len(mine) > 2:
            at_edge.append(f"{base} ({chosen['tuned']})")
        for kind, label in chosen.items():
            if label is not None:
                views.append(runs[runs["variant"] == label].assign(variant=f"{base}_{kind}", grid_run=label))
                view_runs[f"{base}_{kind}"] = label
    view_names = [f"{b}_{kind}" for kind in ("default", "tuned") for b in spec["variants"]]
    resolved = {**study, "experiment": {**spec, "variants": {name: {} for name in view_names}}, "view_runs": view_runs}
    edge_note = ([f"Best value at the edge of the grid, so tuning may be incomplete for: {', '.join(at_edge)}.", ""]
                 if at_edge else [])
    grid_md = "\n".join(["Validation accuracy (test accuracy) of every grid point, mean over seeds; "
                          "`_tuned` takes the best validation accuracy, never the test set:", "", *pipe_table(header, rows), "",
                          *edge_note])
    return (pd.concat(views, ignore_index=True) if views else runs.iloc[0:0]), resolved, grid_md

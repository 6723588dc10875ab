"""Issue 14 diagnosis: where does a run's change in the panel score come from? For the images of two evaluations (a
run and its base model, same prompts and seeds), the mean of each of the ten toy features (five prompt-fidelity
features, five visual-quality features; evaluators.toy.FEATURES), its change, and that change weighted by the panel's
mean weights: the features' shares of the change in the panel's mean utility (toy-pickscore is that utility on
PickScore's scale).

    python results/toy/diagnostics/feature_decomposition.py RUN_DIR BASE_DIR [PROMPT_SET]

A few seconds. Prints a markdown table.
"""
import sys
from pathlib import Path


def main() -> None:
    import bench  # noqa: F401  (torchvision compat first)
    import numpy as np
    from PIL import Image

    from evaluators.rundir import read_run
    from evaluators.toy import FEATURES, Panel, feature_matrix

    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    prompt_set = sys.argv[3] if len(sys.argv) == 4 else "toy"
    feats = []
    for d in sys.argv[1:3]:
        e = read_run(Path(d)).eval(prompt_set)
        s = e.scores().sort_values(["prompt_id", "image_index"])
        images = [Image.open(e.image_file(p)).convert("RGB") for p in s.image_path]
        feats.append(feature_matrix(images, list(s.prompt)))
    run, base = feats
    w = Panel.default().mean_weights
    delta = run.mean(0) - base.mean(0)
    print("| feature | kind | base | run | change | panel weight | weight x change |\n|---|---|---:|---:|---:|---:|---:|")
    for i, name in enumerate(FEATURES):
        kind = "fidelity" if i < 5 else "quality"
        print(f"| {name} | {kind} | {base[:, i].mean():.3f} | {run[:, i].mean():.3f} | {delta[i]:+.3f} | {w[i]:.3f} | "
              f"{w[i] * delta[i]:+.4f} |")
    print(f"| **sum: fidelity** | | | | | | {float(w[:5] @ delta[:5]):+.4f} |")
    print(f"| **sum: quality** | | | | | | {float(w[5:] @ delta[5:]):+.4f} |")


if __name__ == "__main__":
    main()

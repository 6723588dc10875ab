"""What the shipped pairs' images look like by generator, and what SFT fits: the mean of each of the ten toy
features (five prompt-fidelity, five visual-quality) over the pair images of each generator, over the preferred
images (what SFT trains on), and over the base model's own images in the pairs.

    python results/toy/diagnostics/generator_features.py [--out results/toy/diagnostics/generator_features.md]

A feature where the preferred images are WORSE than the base model's own samples is one that SFT on them pulls
down; the table says which.
"""
import argparse
import io
from pathlib import Path

import pandas as pd
from PIL import Image

from bench.toy import PAIRS_FILE
from bench.toy.preferences import generator_of
from evaluators.toy import FEATURES, analyse, feature_matrix

from eval_features import object_rgb, rgb_table  # this folder (run as a script)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("generator_features.md"))
    args = ap.parse_args()
    df = pd.read_parquet(PAIRS_FILE)
    rows, objects = [], {}
    for side in (0, 1):
        analyses = [analyse(Image.open(io.BytesIO(b["bytes"] if isinstance(b, dict) else b)).convert("RGB"))
                    for b in df[f"jpg_{side}"]]
        f = feature_matrix(analyses, list(df["caption"]))
        for an, model, caption in zip(analyses, df[f"model_{side}"], df["caption"]):
            found = objects.setdefault(generator_of(model), ([], []))
            found[0].append(an)
            found[1].append(caption)
        for i in range(len(df)):
            won = df[f"label_{side}"].iloc[i] > df[f"label_{1 - side}"].iloc[i]
            tie = df[f"label_{side}"].iloc[i] == df[f"label_{1 - side}"].iloc[i]
            rows.append({"generator": generator_of(df[f"model_{side}"].iloc[i]), "won": won, "tie": tie,
                         **dict(zip(FEATURES, f[i]))})
    feats = pd.DataFrame(rows)
    groups = {f"all images of {g}": feats[feats.generator == g] for g in sorted(feats.generator.unique())}
    groups["preferred images (SFT's data, ties dropped)"] = feats[feats.won]
    for g in sorted(feats.generator.unique()):
        groups[f"preferred images of {g}"] = feats[feats.won & (feats.generator == g)]
    table = pd.DataFrame({k: v[list(FEATURES)].mean() for k, v in groups.items()}).T
    table["n"] = [len(v) for v in groups.values()]
    table["fidelity mean"] = table[list(FEATURES[:5])].mean(axis=1)
    table["quality mean"] = table[list(FEATURES[5:])].mean(axis=1)
    base = table.loc["all images of toy-base"]
    pref = table.loc["preferred images (SFT's data, ties dropped)"]
    worse = [c for c in FEATURES if pref[c] < base[c]]
    cols = ["n", *FEATURES, "fidelity mean", "quality mean"]
    md = ["| images | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for k, r in table[cols].iterrows():
        md.append(f"| {k} | " + " | ".join(str(int(r[c])) if c == "n" else f"{r[c]:.3f}" for c in cols) + " |")
    text = ("# The shipped pairs' features by generator\n\n`python results/toy/diagnostics/generator_features.py`\n\n"
            + "\n".join(md) + f"\n\nFeatures where SFT's data (the preferred images) is worse than the base model's "
            f"own samples: {', '.join(worse) or 'none'}.\n")
    text += ("\nMean RGB of the object found, by the colour the caption asks for (the palette's colour in the header; "
             "step 7d: a hue shift inside a colour class is invisible to the colour feature):\n\n"
             + rgb_table({g: object_rgb(*v) for g, v in sorted(objects.items())}, "generator") + "\n")
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

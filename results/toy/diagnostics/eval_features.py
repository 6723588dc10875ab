"""Which of the ten toy features a fine-tune moves: the mean of each feature (five prompt-fidelity, five
visual-quality) over the images of one evaluation of each run, and each run's change against the first run (the base
model). The images are the same prompts and seeds in every run, so a change is the fine-tune's.

    python results/toy/diagnostics/eval_features.py BASE_RUN RUN... [--prompt-set toy-test] [--out FILE.md]

A run folder is any folder with ``eval/<prompt set>/images/`` (a trained run or a ``base-toy-*`` folder). A second
table gives, per asked-for colour, the mean RGB of the object the analysis finds (beside the palette's colour), where a
hue drift shows that the colour feature's classification hides until it crosses a class boundary.
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from evaluators.toy import COLOURS, FEATURES, analyse, feature_matrix, parse_prompt


def analyses_of(run: Path, prompt_set: str) -> tuple[list, list[str]]:
    """The toy analysis of every image of the run's evaluation on ``prompt_set``, and the images' prompts."""
    analyses, prompts = [], []
    for path in sorted((run / "eval" / prompt_set / "images").glob("*.png")):
        with Image.open(path) as im:
            prompts.append(im.info["prompt"])
            analyses.append(analyse(im.convert("RGB")))
    if not analyses:
        raise SystemExit(f"{run}: no images under eval/{prompt_set}/images (evaluate it on {prompt_set} first)")
    return analyses, prompts


def object_rgb(analyses: list, prompts: list[str]) -> dict[str, np.ndarray]:
    """Per asked-for colour, the mean RGB of the object found (images where one is found)."""
    found: dict[str, list] = {}
    for an, prompt in zip(analyses, prompts):
        if an.present:
            found.setdefault(parse_prompt(prompt).colour, []).append(an.foreground_rgb)
    return {c: np.mean(v, axis=0) for c, v in found.items()}


def rgb_table(rgb: dict[str, dict[str, np.ndarray]], first: str) -> str:
    """Markdown: one row per name of ``rgb`` ({name: object_rgb(...)}), one column per palette colour all rows have
    (the palette's colour in the header); ``first`` heads the name column."""
    colours = [c for c in COLOURS if all(c in r for r in rgb.values())]
    md = [f"| {first} | " + " | ".join(f"{c} {COLOURS[c]}" for c in colours) + " |", "|---|" + "---|" * len(colours)]
    md += [f"| {name} | " + " | ".join("({:.0f}, {:.0f}, {:.0f})".format(*r[c]) for c in colours) + " |"
           for name, r in rgb.items()]
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="the base model's folder first, then the runs")
    ap.add_argument("--prompt-set", default="toy-test")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    loaded = {run: analyses_of(run, args.prompt_set) for run in args.runs}
    feats = {run: feature_matrix(*a) for run, a in loaded.items()}
    n = {len(f) for f in feats.values()}
    if len(n) != 1:
        raise SystemExit(f"the runs have different numbers of images on {args.prompt_set}: {sorted(n)}")
    base = feats[args.runs[0]].mean(axis=0)
    cols = [*FEATURES, "fidelity mean", "quality mean"]

    def row(name: str, v: np.ndarray) -> str:
        v = np.concatenate([v, [v[:5].mean(), v[5:].mean()]])
        return f"| {name} | " + " | ".join(f"{x:+.3f}" if name.startswith("change") else f"{x:.3f}" for x in v) + " |"

    md = ["| run | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for run, f in feats.items():
        md.append(row(run.name, f.mean(axis=0)))
    for run, f in list(feats.items())[1:]:
        md.append(row(f"change of {run.name}", f.mean(axis=0) - base))
    text = (f"# Toy features of each run's `{args.prompt_set}` images ({next(iter(n))} images each)\n\n"
            f"`python results/toy/diagnostics/eval_features.py {' '.join(str(r) for r in args.runs)} "
            f"--prompt-set {args.prompt_set}`\n\n" + "\n".join(md)
            + "\n\nMean RGB of the object found, by the colour the prompt asks for (the palette's colour in the "
            "header):\n\n" + rgb_table({run.name: object_rgb(*a) for run, a in loaded.items()}, "run") + "\n")
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Attribute fidelity of a toy `bench sweep`'s selected runs on its test prompts (for the README's toy table):

    python results/toy/sweep_attributes.py runs/sweep/report > results/toy/sweep/attributes.md

Per run (the base model first): the share of its test images whose analysed shape, position, and all five
attributes are the prompt's (`bench.toy.validate.attribute_accuracy`, the toy build's fidelity check).
"""
import json
import sys
from pathlib import Path

from bench.toy.validate import attribute_accuracy


def test_base(runs, test: str) -> Path:
    """The base model's run folder beside a sweep's selected ``runs``, the one evaluated on the ``test`` prompts."""
    return next(p for p in next(iter(runs)).parent.glob("base-toy-*")
                if (p / "eval" / test / "summary.json").is_file())


def main() -> None:
    report = Path(sys.argv[1])
    sweep = json.loads((report / "sweep.json").read_text())
    test = sweep["test_prompts"]
    runs = {name: Path(v["run"]) for name, v in sweep["selected"].items()}
    base = test_base(runs.values(), test)
    print(f"Attributes right on `{test}` ({sweep['test_images_per_prompt']} seeds per prompt), from {report}:\n")
    print("| run | colour | shape | size | position | background | all five |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, run in {"base model": base, **runs}.items():
        a = attribute_accuracy(run / "eval" / test)
        print(f"| {name} | " + " | ".join(f"{a[k]:.2f}" for k in ("colour", "shape", "size", "position",
                                                                  "background", "all_attributes")) + " |")


if __name__ == "__main__":
    main()

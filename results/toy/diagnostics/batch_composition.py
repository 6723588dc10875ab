"""Does a sampled image depend on the other images of its batch? (results/toy/README.md, step 7i)

    python results/toy/diagnostics/batch_composition.py > results/toy/diagnostics/batch_composition.md

The toy base model, the first 4 `toy:test` prompts x 3 seeds, DDIM with the evaluation's guidance 4 and 20 steps
(and 2 steps), each image with its own seeded generator as the harness makes them. Once in the harness's batches of
8 in (prompt, seed) order, once with only the third seed of each prompt in one batch of 4 (what resuming with those
images missing used to generate). Prints, per image of the second set, the largest pixel difference (0-255) and how
many pixels differ.
"""
import numpy as np

import bench  # noqa: F401  (torchvision compat before transformers)
from bench.evaluate import load_pipeline, make_generate
from evaluators.harness import GenerationSpec, image_seed
from evaluators.prompts import load_prompts


def main() -> None:
    prompts = load_prompts("toy:test", limit=4).prompts
    pipe = load_pipeline("toy", sampler="ddim")
    print("# Batch composition and sampled pixels\n\n`python results/toy/diagnostics/batch_composition.py`\n")
    print("| DDIM steps | image (prompt, seed index) | largest pixel difference | pixels that differ (of 1024) |")
    print("|---:|---|---:|---:|")
    for steps in (2, 20):
        spec = GenerationSpec(sampler="ddim", steps=steps, cfg=4.0, resolution=32, seed=0, images_per_prompt=3)
        generate = make_generate(pipe, spec)
        items = [(p, pid, k, image_seed(0, pid, k)) for pid, p in enumerate(prompts) for k in range(3)]
        whole = {}
        for i in range(0, len(items), 8):
            chunk = items[i:i + 8]
            for c, im in zip(chunk, generate([c[0] for c in chunk], [c[3] for c in chunk])):
                whole[(c[1], c[2])] = np.asarray(im).astype(int)
        third = [c for c in items if c[2] == 2]
        for c, im in zip(third, generate([c[0] for c in third], [c[3] for c in third])):
            d = np.abs(np.asarray(im).astype(int) - whole[(c[1], c[2])])
            print(f"| {steps} | ({c[1]}, {c[2]}) | {d.max()} | {int((d.max(axis=-1) > 0).sum())} |")


if __name__ == "__main__":
    main()

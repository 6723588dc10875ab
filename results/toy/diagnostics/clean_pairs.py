"""Control pairs for results/toy/README.md: the winner of every decided shipped pair replaced by a CLEAN render of its
caption (the toy world's ground truth, no degradation; a picture like the base model's training data), the loser kept
(the base model sample the rater liked less). Pick-a-Pic v2 schema, label_0 = 1, reward_0/reward_1 from the panel:

    python results/toy/diagnostics/clean_pairs.py OUT.parquet
    bench run --method sft --data OUT.parquet      # or dpo, smpo, ...

A method that fits its winners should move the base model toward clean renders here. About 10 s.
"""
import io
import sys


def main() -> None:
    import bench  # noqa: F401  (torchvision compat first)
    import numpy as np
    import pandas as pd
    from PIL import Image

    from bench.toy import PAIRS_FILE
    from bench.toy.preferences import png_bytes
    from bench.toy.world import draw, parse_prompt, sample_scene
    from evaluators.toy import ToyPickScore

    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    df = pd.read_parquet(PAIRS_FILE)
    df = df[df.label_0 != 0.5].reset_index(drop=True)
    rng = np.random.default_rng(123)
    winners, losers = [], []
    for row in df.itertuples():
        losers.append(row.jpg_1 if row.label_0 == 1.0 else row.jpg_0)
        winners.append(png_bytes(draw(sample_scene(parse_prompt(row.caption), rng, 0.0))))
    scorer = ToyPickScore()  # its raw score is what the shipped pairs' reward_0/reward_1 store
    rewards = [scorer.raw_score([Image.open(io.BytesIO(b)).convert("RGB") for b in images], list(df.caption)).numpy()
               for images in (winners, losers)]
    out = pd.DataFrame({"caption": df.caption, "jpg_0": winners, "jpg_1": losers, "label_0": 1.0, "label_1": 0.0,
                        "user_id": df.user_id, "ranking_id": df.ranking_id, "model_0": "clean render",
                        "model_1": "toy base model", "reward_0": rewards[0], "reward_1": rewards[1]})
    out.to_parquet(sys.argv[1])
    print(f"{sys.argv[1]}: {len(out)} pairs; mean reward winner {np.mean(rewards[0]):.4f}, "
          f"loser {np.mean(rewards[1]):.4f}")


if __name__ == "__main__":
    main()

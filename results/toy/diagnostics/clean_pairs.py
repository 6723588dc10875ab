"""Control pairs for results/toy/README.md: the winner of every decided shipped pair replaced by a CLEAN render of its
caption (the toy world's ground truth, no degradation; a picture like the base model's training data), the loser kept
(the base model sample the rater liked less). Pick-a-Pic v2 schema, label_0 = 1, reward_0/reward_1 from the panel:

    python results/toy/diagnostics/clean_pairs.py OUT.parquet [--round-trip]
    bench run --method sft --data OUT.parquet      # or dpo, smpo, ...

A method that fits its winners should move the base model toward clean renders here. About 10 s.
``--round-trip``: each render goes through the base model's VAE first (posterior mean, decoded, rounded to 8 bits),
as a generated pair image does (its latents decoded to a PNG that the trainer encodes again): one change.
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

    args = [a for a in sys.argv[1:] if a != "--round-trip"]
    if len(args) != 1:
        raise SystemExit(__doc__)
    round_trip = "--round-trip" in sys.argv
    if round_trip:
        import torch
        from diffusers import AutoencoderKL

        from bench.toy import MODEL_DIR

        vae = AutoencoderKL.from_pretrained(MODEL_DIR / "vae").float().eval()

        def through_vae(img):
            x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
            with torch.no_grad():
                y = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            return Image.fromarray(((y[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8))
    df = pd.read_parquet(PAIRS_FILE)
    df = df[df.label_0 != 0.5].reset_index(drop=True)
    rng = np.random.default_rng(123)
    winners, losers = [], []
    for row in df.itertuples():
        losers.append(row.jpg_1 if row.label_0 == 1.0 else row.jpg_0)
        img = draw(sample_scene(parse_prompt(row.caption), rng, 0.0))
        winners.append(png_bytes(through_vae(img) if round_trip else img))
    scorer = ToyPickScore()  # its raw score is what the shipped pairs' reward_0/reward_1 store
    rewards = [scorer.raw_score([Image.open(io.BytesIO(b)).convert("RGB") for b in images], list(df.caption)).numpy()
               for images in (winners, losers)]
    out = pd.DataFrame({"caption": df.caption, "jpg_0": winners, "jpg_1": losers, "label_0": 1.0, "label_1": 0.0,
                        "user_id": df.user_id, "ranking_id": df.ranking_id, "model_0": "clean render" + (" (VAE round trip)" if round_trip else ""),
                        "model_1": "the shipped pair's loser", "reward_0": rewards[0], "reward_1": rewards[1]})
    out.to_parquet(args[0])
    print(f"{args[0]}: {len(out)} pairs; mean reward winner {np.mean(rewards[0]):.4f}, "
          f"loser {np.mean(rewards[1]):.4f}")


if __name__ == "__main__":
    main()

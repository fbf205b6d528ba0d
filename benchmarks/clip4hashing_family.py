"""CLIP4Hashing against ITQ, LSH and float cosine on a family of generated CLIP-like feature sets.

Features differ from one CLIP model, domain and pooling to the next, so a method's defaults must hold on a
family of settings, not on one generator. Each setting draws 512-d L2-normalised video and caption embeddings:

- a semantic latent (64-d, spectrum (1+j)^-0.5) expressed in one random basis shared by both modalities;
- noise outside it, in a random basis of its own per modality: anisotropic (spectrum (1+j)^-decay over all 512
  directions) or isotropic (decay 0), with weight sqrt(1 - signal^2) against the semantic part's signal;
- captions: the video's latent plus Gaussian caption noise, several captions per training video;
- optionally CLIP's geometry: a cone direction shared by both modalities and one gap direction per modality.

The "external" setting reproduces the features of issue 16 (matching video-caption cosine 0.35 +- 0.11,
unrelated pairs 0.00, float R@1 ~37); the others change one thing each, and "topics" is the project's first
generator (benchmarks/synthetic_clip.py). Reported per setting: the feature
statistics, float R@1, and R@1 (T->V / V->T) of LSH, ITQ and CLIP4Hashing (the defaults and the paper's method)
at 64 and 2048 bits, with training seconds.

    .venv/bin/python benchmarks/clip4hashing_family.py                       # every setting, seed 0
    .venv/bin/python benchmarks/clip4hashing_family.py --settings external --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pydantic

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from hashing.hashers import make_hasher  # noqa: E402
from hashing.methods.clip4hashing import Clip4HashingConfig, Clip4HashingTrainOptions, train_clip4hashing  # noqa: E402
from hashing.methods.clip4hashing.retrieval import cross_modal_retrieval  # noqa: E402
from synthetic_clip import SyntheticClipConfig, SyntheticClipWorld  # noqa: E402


class FeatureSetting(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    dim: int = 512
    latent: int = 64
    signal: float = 0.8
    noise_decay: float = 0.5
    cone: float = 0.0
    gap: float = 0.0
    captions: int = 5
    caption_noise: float = 1.5
    train_pairs: int = 20_000
    test_videos: int = 1000
    # "latent": the generator below; "topics": the project's first generator (benchmarks/synthetic_clip.py:
    # topic clusters, cone and gap, structured modality-specific variation, little isotropic noise), which only
    # takes ``captions`` and the sizes from this setting.
    generator: Literal["latent", "topics"] = "latent"


SETTINGS: dict[str, FeatureSetting] = {
    "external": FeatureSetting(),
    "isotropic-noise": FeatureSetting(noise_decay=0.0),
    "low-noise": FeatureSetting(signal=0.9),
    "high-noise": FeatureSetting(signal=0.7),
    "cone-and-gap": FeatureSetting(cone=0.6, gap=0.8),
    "one-caption": FeatureSetting(captions=1),
    "precise-captions": FeatureSetting(caption_noise=0.8),
    "vague-captions": FeatureSetting(caption_noise=2.2, signal=0.85),
    "topics": FeatureSetting(generator="topics", captions=2),
}


def feature_world(setting: FeatureSetting, seed: int) -> FeatureWorld | TopicsWorld:
    return TopicsWorld(seed) if setting.generator == "topics" else FeatureWorld(setting, seed)


class TopicsWorld:
    """benchmarks/synthetic_clip.py behind ``FeatureWorld.sample``."""

    def __init__(self, seed: int) -> None:
        self.world = SyntheticClipWorld(SyntheticClipConfig(seed=seed))

    def sample(self, n_videos: int, captions: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pairs = self.world.sample(n_videos, captions_per_video=captions, seed=seed)
        return pairs.video, pairs.text, pairs.video_index


class FeatureWorld:
    """The fixed directions of one setting and seed; ``sample`` draws pairs from it."""

    def __init__(self, setting: FeatureSetting, seed: int) -> None:
        self.setting = setting
        rng = np.random.default_rng(seed)
        dim, latent = setting.dim, setting.latent
        basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
        self.semantic = basis[:, :latent]
        self.cone, self.video_gap, self.text_gap = basis[:, latent], basis[:, latent + 1], basis[:, latent + 2]
        self.noise_bases = {m: np.linalg.qr(rng.standard_normal((dim, dim)))[0] for m in ("video", "text")}
        spectrum = (1.0 + np.arange(latent)) ** -0.5
        self.spectrum = spectrum / np.linalg.norm(spectrum)
        noise = (1.0 + np.arange(dim)) ** -setting.noise_decay
        self.noise_spectrum = noise / np.linalg.norm(noise)

    def sample(self, n_videos: int, captions: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row-aligned (video, text, video index) with ``captions`` rows per video."""
        rng = np.random.default_rng(seed)
        s = self.setting
        latent = rng.standard_normal((n_videos, s.latent))
        video_of_row = np.repeat(np.arange(n_videos), captions)
        caption_latent = latent[video_of_row] + s.caption_noise * rng.standard_normal((len(video_of_row), s.latent))
        video = self._express(latent, "video", self.video_gap, rng)
        text = self._express(caption_latent, "text", self.text_gap, rng)
        return video[video_of_row], text, video_of_row

    def _express(self, latent: np.ndarray, modality: str, gap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = self.setting
        semantic = _unit((latent * self.spectrum) @ self.semantic.T)
        noise = _unit((rng.standard_normal((len(latent), s.dim)) * self.noise_spectrum) @ self.noise_bases[modality].T)
        rows = s.signal * semantic + np.sqrt(1.0 - s.signal**2) * noise + s.cone * self.cone + s.gap * gap
        return _unit(rows).astype(np.float32)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def statistics(video: np.ndarray, text: np.ndarray) -> dict:
    shuffled = np.random.default_rng(0).permutation(len(video))
    matching, unrelated = (video * text).sum(1), (video * text[shuffled]).sum(1)
    return {"matching_cosine": [round(float(matching.mean()), 3), round(float(matching.std()), 3)],
            "unrelated_cosine": [round(float(unrelated.mean()), 3), round(float(unrelated.std()), 3)],
            "video_video_cosine": round(float((video * video[shuffled]).sum(1).mean()), 3)}


# CLIP4Hashing as configured by default, and the paper's method.
VARIANTS = {"clip4hashing": {}, "clip4hashing-paper": {"input_transform": "none", "network": "mlp"}}


def run_setting(name: str, setting: FeatureSetting, seed: int, bits: list[int], hidden: int, log,
                variants: tuple[str, ...] = tuple(VARIANTS)) -> dict:
    world = feature_world(setting, seed)
    video, text, _ = world.sample(setting.train_pairs // setting.captions, setting.captions, seed=seed + 1)
    test_video, test_text, _ = world.sample(setting.test_videos, 1, seed=seed + 2)
    truth = np.arange(setting.test_videos)

    def r1(metrics: dict) -> list[float]:
        return [round(metrics["t2v"]["R@1"], 1), round(metrics["v2t"]["R@1"], 1)]

    result = {"setting": name, "seed": seed, **setting.model_dump(), **statistics(test_video, test_text),
              "float_r1": r1(cross_modal_retrieval(test_video, test_text, truth, "cosine")), "rows": []}
    log(f"{name} seed {seed}: float R@1 {result['float_r1']}, matching {result['matching_cosine']}, "
        f"unrelated {result['unrelated_cosine']}")
    pooled = np.concatenate([np.unique(video, axis=0), text])
    for n_bits in bits:
        for method in ("lsh", "itq"):
            if method == "itq" and n_bits > setting.dim:
                continue
            hasher = make_hasher(method, n_bits, seed=seed).fit(pooled)
            row = {"method": method, "bits": n_bits, "r1": r1(cross_modal_retrieval(
                hasher.encode(test_video, "video"), hasher.encode(test_text, "text"), truth, "hamming"))}
            result["rows"].append(row)
            log(f"  {method:<22} {n_bits:>5} bits  R@1 {row['r1']}")
        for variant, changes in VARIANTS.items():
            if variant not in variants:
                continue
            started = time.perf_counter()
            hasher, history = train_clip4hashing(video, text, Clip4HashingConfig(n_bits=n_bits, dim=setting.dim,
                                                                                 hidden=hidden, **changes),
                                                 Clip4HashingTrainOptions(device="cpu", seed=seed))
            row = {"method": variant, "bits": n_bits, "train_seconds": round(time.perf_counter() - started, 1),
                   "chosen_epoch": history["chosen_epoch"][0],
                   "cca_regularization": history.get("cca_regularization", [None])[0],
                   "r1": r1(cross_modal_retrieval(hasher.encode(test_video, "video"), hasher.encode(test_text, "text"),
                                                  truth, "hamming"))}
            result["rows"].append(row)
            log(f"  {variant:<22} {n_bits:>5} bits  R@1 {row['r1']}  ({row['train_seconds']} s, epoch "
                f"{row['chosen_epoch']:.0f}, ridge {row['cca_regularization']})")
    return result


def summary_table(runs: list[dict]) -> str:
    """Markdown, one line per setting and seed: R@1 (T->V / V->T) and the two bars of issue 16."""
    lines = ["| setting | seed | float R@1 | ITQ 64 | CLIP4Hashing 64 | × ITQ | LSH 2048 | CLIP4Hashing 2048 | % of float "
             "| ridge 64 / 2048 | train s 64 + 2048 |",
             "|---|---:|---|---|---|---|---|---|---|---|---:|"]
    worst_ratio, worst_share = float("inf"), float("inf")
    for run in runs:
        rows = {(row["method"], row["bits"]): row for row in run["rows"]}
        itq, c64, lsh, c2k = (rows.get(key) for key in (("itq", 64), ("clip4hashing", 64), ("lsh", 2048),
                                                         ("clip4hashing", 2048)))
        if not (itq and c64 and lsh and c2k):
            continue
        ratio = [c / max(i, 1e-9) for c, i in zip(c64["r1"], itq["r1"])]
        share = [100 * c / f for c, f in zip(c2k["r1"], run["float_r1"])]
        worst_ratio, worst_share = min(worst_ratio, *ratio), min(worst_share, *share)

        def pair(values: list[float], fmt: str = "{:.1f}") -> str:
            return " / ".join(fmt.format(v) for v in values)

        lines.append(f"| {run['setting']} | {run['seed']} | {pair(run['float_r1'])} | {pair(itq['r1'])} | "
                     f"**{pair(c64['r1'])}** | {pair(ratio, '{:.2f}×')} | {pair(lsh['r1'])} | **{pair(c2k['r1'])}** | "
                     f"{pair(share, '{:.0f} %')} | {c64.get('cca_regularization')} / {c2k.get('cca_regularization')} | "
                     f"{c64['train_seconds'] + c2k['train_seconds']:.0f} |")
    lines.append(f"\nWorst over all rows: 64-bit CLIP4Hashing / ITQ {worst_ratio:.2f}× (bar 1.5×), 2048-bit "
                 f"{worst_share:.0f} % of float (bar 95 %).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--bits", default="64,2048")
    parser.add_argument("--hidden", type=int, default=512, help="CLIP4Hashing hidden width (default 512)")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper's method (halves the run time)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "clip4hashing_family.json")
    parser.add_argument("--summarize", type=Path, default=None, metavar="JSON",
                        help="print the markdown table of an earlier run's results file and exit")
    args = parser.parse_args(argv)
    if args.summarize is not None:
        print(summary_table(json.loads(args.summarize.read_text())["runs"]))
        return 0
    unknown = set(args.settings.split(",")) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}; choose from {', '.join(SETTINGS)}")
    results = {"machine": {"platform": platform.platform()}, "runs": []}
    started = time.perf_counter()
    for name in args.settings.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            results["runs"].append(run_setting(name, SETTINGS[name], seed, [int(b) for b in args.bits.split(",")],
                                               args.hidden, lambda line: print(line, flush=True),
                                               ("clip4hashing",) if args.no_paper else tuple(VARIANTS)))
            results["seconds"] = round(time.perf_counter() - started, 1)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")  # after each run: a long run keeps its results
    print(summary_table(results["runs"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Tests for hashing/encoders/identity.py: the facts a driver derives without a model are the built model's."""

import shutil
import subprocess
import sys

import pytest

from hashing.encoders import build_media_encoder, media_encoder_facts
from hashing.encoders.identity import ResolvedWeights, expected_frame_spec, open_clip_identity
from hashing.encoders.weights import OpenClipEncoderConfig, arch_model_cfg


def tiny(**overrides) -> OpenClipEncoderConfig:
    return OpenClipEncoderConfig(arch="reelhash-tiny", allow_random_weights=True, device="cpu", **overrides)


@pytest.mark.parametrize("seed", [0, 3])
def test_facts_without_a_model_equal_the_built_encoders(seed):
    config = tiny(random_seed=seed)
    facts = media_encoder_facts(config)
    encoder = build_media_encoder(config)
    assert (facts.encoder_id, facts.frame_spec, facts.embed_dim) == (encoder.encoder_id, encoder.frame_spec,
                                                                     encoder.embed_dim)
    assert facts.description == encoder.describe()


def test_a_checkpoint_is_identified_by_its_content(tmp_path):
    import open_clip
    import torch

    encoder = build_media_encoder(tiny())
    first, second = tmp_path / "a.pt", tmp_path / "copy" / "b.pt"
    torch.save(open_clip.create_model("reelhash-tiny").state_dict(), first)
    second.parent.mkdir()
    shutil.copyfile(first, second)
    same = [open_clip_identity(OpenClipEncoderConfig(arch="reelhash-tiny", checkpoint_path=str(path)))
            for path in (first, second)]
    assert same[0].encoder_id == same[1].encoder_id != encoder.encoder_id
    assert build_media_encoder(OpenClipEncoderConfig(arch="reelhash-tiny", checkpoint_path=str(first),
                                                     device="cpu")).encoder_id == same[0].encoder_id


def test_a_pretrained_tags_normalisation_reaches_the_frame_spec():
    # ViT-B-32 'openai' keeps open_clip's defaults; a tag trained with other statistics overrides them.
    model_cfg = arch_model_cfg("ViT-B-32")
    weights = ResolvedWeights(kind="pretrained", file=None, identity={"kind": "pretrained", "tag": "x"},
                              preprocess_overrides={"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)},
                              force_quick_gelu=False)
    spec = expected_frame_spec(model_cfg, weights)
    assert spec.size == 224 and spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.25, 0.25, 0.25)


def test_facts_of_an_open_clip_encoder_need_no_torch():
    code = ("import sys; from hashing.encoders import media_encoder_facts; "
            "f = media_encoder_facts({'arch': 'ViT-B-32', 'allow_random_weights': True}); "
            "print(f.embed_dim, f.frame_spec.size, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["512", "224", "False"]

import pytest
import torch

from hashing.methods.dsmhn.streams import Frame2DStream, MlpStream, TextStream, Video3DStream


def test_streams_output_relaxed_codes_of_k_bits():
    torch.manual_seed(0)
    clips = torch.randn(3, 3, 4, 16, 16)
    for stream, x in (
        (Video3DStream(16, width=4), clips),
        (Frame2DStream(16, width=4), clips),
        (Frame2DStream(16, width=4), clips[:, :, 0]),
        (TextStream(30, 8, 16), torch.rand(3, 30)),
        (MlpStream(7, 8, 16), torch.randn(3, 7)),
    ):
        codes = stream.eval()(x)
        assert codes.shape == (3, 16)
        assert codes.abs().max() < 1


def test_mean_pooled_2d_stream_ignores_frame_order_but_3d_stream_does_not():
    torch.manual_seed(0)
    clips = torch.randn(2, 3, 4, 16, 16)
    reversed_clips = clips.flip(2)
    with torch.no_grad():
        frame2d, video3d = Frame2DStream(16, width=4).eval(), Video3DStream(16, width=4).eval()
        assert torch.allclose(frame2d(clips), frame2d(reversed_clips), atol=1e-6)
        assert not torch.allclose(video3d(clips), video3d(reversed_clips), atol=1e-3)


def test_torchvision_backbones_build_without_weights():
    stream = Video3DStream(16, arch="r3d18")
    assert stream.hash.linear.in_features == 512


def test_slow_transform_changes_only_the_slow_pathway():
    from hashing.methods.dsmhn.streams import SlowFastBackbone

    torch.manual_seed(0)
    backbone = SlowFastBackbone(4, 2, fast_input="diff").eval()
    clips = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        plain = backbone(clips)
        blanked = backbone(clips, slow_transform=torch.zeros_like)
    slow = backbone.slow.out_features
    assert torch.equal(plain[:, slow:], blanked[:, slow:])  # fast features: the same clip
    assert not torch.allclose(plain[:, :slow], blanked[:, :slow])


def test_fast_scale_runs_the_fast_pathway_on_pooled_frames():
    from hashing.methods.dsmhn.streams import SlowFastBackbone

    torch.manual_seed(0)
    coarse = SlowFastBackbone(4, 2, fast_scale=2).eval()
    full = SlowFastBackbone(4, 2, fast_scale=1).eval()
    full.load_state_dict(coarse.state_dict())
    clips = torch.randn(2, 3, 4, 16, 16)
    pooled = torch.nn.functional.avg_pool3d(clips, (1, 2, 2))
    with torch.no_grad():
        assert torch.allclose(coarse.fast(pooled), coarse(clips)[:, coarse.slow.out_features:], atol=1e-6)
        assert not torch.allclose(coarse(clips), full(clips))
    with pytest.raises(ValueError, match="fast_scale"):
        SlowFastBackbone(4, 2, fast_scale=0)
